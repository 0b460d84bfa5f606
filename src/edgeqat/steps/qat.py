"""qat: wrap the FP32 model with tfmot's fake-quant layers and fine-tune briefly at a low LR.

``qat.finetune_source`` / ``qat.finetune_path`` fine-tune on separate (e.g. on-site) data,
prepared on the fly with the same image size, channels and normalisation as the main
data; its class names must be among the main data's classes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.config import QatConfig
from edgeqat.data.base import RecordSource
from edgeqat.data.shards import count_records, load_meta, make_dataset
from edgeqat.data.sources import open_source
from edgeqat.data.split import stratified_split
from edgeqat.errors import DataError, ModelError
from edgeqat.io import log, write_json, write_text
from edgeqat.models.io import load_model, save_model
from edgeqat.models.training import accuracy, compile_classifier, fit, history_csv


class _Relabelled(RecordSource):
    """A source whose labels are re-indexed onto the main data's class list."""

    def __init__(self, src: RecordSource, class_names: list[str]) -> None:
        unknown = [c for c in src.class_names if c not in class_names]
        if unknown:
            raise DataError(
                f"{src.origin}: fine-tuning classes {unknown} are not among the prepared classes {class_names}"
            )
        lut = np.array([class_names.index(c) for c in src.class_names], dtype=np.int64)
        self.origin, self.class_names, self.labels, self._src = src.origin, class_names, lut[src.labels], src

    def read(self, i: int) -> np.ndarray:
        return self._src.read(i)


def _prepare_finetune(cfg: QatConfig, meta: dict, workdir: Path) -> Path:
    from edgeqat.steps.prepare import write_prepared

    size, _, channels = meta["image_shape"]
    with open_source(cfg.finetune_source, cfg.finetune_path) as src:
        log(f"qat: fine-tuning on {len(src)} images from {src.origin}")
        rel = _Relabelled(src, meta["class_names"])
        order = stratified_split(rel.labels, 0.0, 0.0, cfg.seed)["train"]
        write_prepared(rel, workdir, size, channels, meta["normalization"]["scheme"], {"train": order}, 1024)
    return workdir / "train"


def quantize(model: Any) -> Any:
    from edgeqat.tf_compat import tfmot

    try:
        return tfmot.quantization.keras.quantize_model(model)
    except (ValueError, RuntimeError) as err:
        raise ModelError(f"tfmot cannot quantize model {model.name!r}: {err}") from None


def qat(
    cfg: QatConfig,
    prepared: str | Path,
    fp32_model: str | Path,
    model_out: str | Path,
    metrics_path: str | Path | None = None,
    history_path: str | Path | None = None,
) -> dict[str, Any]:
    from edgeqat.tf_compat import set_determinism

    t0 = time.monotonic()
    set_determinism(cfg.seed)
    prepared = Path(prepared)
    meta = load_meta(prepared)
    norm = meta["normalization"]["scheme"]
    with tempfile.TemporaryDirectory(prefix="edgeqat-finetune-") as tmp:
        train_dir = prepared / "train"
        if cfg.finetune_source is not None:
            train_dir = _prepare_finetune(cfg, meta, Path(tmp) / "prepared")
        train_ds = make_dataset(train_dir, norm, cfg.batch_size, shuffle_buffer=2048, seed=cfg.seed)
        val_ds = make_dataset(prepared / "val", norm, cfg.batch_size)
        test_ds = make_dataset(prepared / "test", norm, cfg.batch_size)

        model = quantize(load_model(fp32_model))
        compile_classifier(model, cfg.learning_rate)
        rows = fit(model, train_ds, val_ds, cfg.epochs, 0, tag="qat")
        metrics = {
            "val_accuracy": accuracy(model, val_ds),
            "test_accuracy": accuracy(model, test_ds),
            "epochs_run": len(rows),
            "finetune_images": count_records(train_dir),
            "seconds": round(time.monotonic() - t0, 2),
        }
    save_model(model, model_out)
    if history_path is not None:
        write_text(history_path, history_csv(rows))
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    log(f"qat: test accuracy {metrics['test_accuracy']:.4f} -> {model_out}")
    return metrics
