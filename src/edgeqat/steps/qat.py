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
from edgeqat.errors import DataError
from edgeqat.io import log, maybe_atomic_dir, write_json, write_text
from edgeqat.models.absent import mark, not_built, skip_line
from edgeqat.models.io import load_model, save_model
from edgeqat.compression.recipes import quantize
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
    from edgeqat.data.prepared import write_prepared

    size, _, channels = meta["image_shape"]
    with open_source(cfg.finetune_source, cfg.finetune_path) as src:
        log(f"qat: fine-tuning on {len(src)} images from {src.origin}")
        rel = _Relabelled(src, meta["class_names"])
        order = stratified_split(rel.labels, 0.0, 0.0, cfg.seed)["train"]
        write_prepared(rel, workdir, size, channels, meta["normalization"]["scheme"], {"train": order}, 1024)
    return workdir / "train"


def qat(
    cfg: QatConfig,
    prepared: str | Path,
    fp32_model: str | Path,
    model_out: str | Path,
    history_path: str | Path | None = None,
    *,
    mixed_out: str | Path | None = None,
    sensitivity_json: str | Path | None = None,
    sensitivity_md: str | Path | None = None,
    tensorboard_dir: str | Path | None = None,
    variants: list[str] | None = None,
    per_channel: bool = True,
    trust_model_code: bool = False,
) -> dict[str, Any]:
    """Plain QAT -> ``model_out``. With ``mixed_out``, also the mixed-precision model
    (``qat.keep_float``, or the fewest float layers meeting ``qat.max_accuracy_drop`` with
    ``qat.auto_keep_float``); with ``sensitivity_json``, the per-layer sensitivity report.
    ``variants`` (convert.variants; None: all): a model no requested variant needs is not
    trained, and a marker takes its file's place (:mod:`edgeqat.models.absent`).
    ``per_channel`` (``convert.per_channel``) False: one weight scale per kernel, BatchNorms
    folded first (:mod:`edgeqat.compression.schemes`). ``trust_model_code``: the run's trust
    decision for the FP32 model file (:func:`~edgeqat.models.io.load_model`)."""
    from edgeqat.tf_compat import set_determinism

    skipped = not_built("qat", variants, fp32_model)
    if "mixed" not in skipped:
        skipped.pop("qat_int8", None)  # the mixed model starts from the plain QAT one: trained either way
    if skipped:
        log(skip_line("qat", skipped))
    if {"qat_int8", "mixed"} <= set(skipped):
        return _nothing_to_build(skipped, model_out, mixed_out, history_path, sensitivity_json, sensitivity_md)
    if "mixed" in skipped:
        mark(mixed_out, ["mixed"], skipped)
        mixed_out = None
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

        model = quantize(load_model(fp32_model, trust_code=trust_model_code), per_channel)
        compile_classifier(model, cfg.learning_rate)
        with maybe_atomic_dir(tensorboard_dir) as tb:
            rows = fit(model, train_ds, val_ds, cfg.epochs, 0, tag="qat", log_dir=tb)
        metrics = {
            "val_accuracy": accuracy(model, val_ds),
            "test_accuracy": accuracy(model, test_ds),
            "epochs_run": len(rows),
            "finetune_images": count_records(train_dir),
        }
        sens = None
        if sensitivity_json is not None or (mixed_out is not None and cfg.auto_keep_float):
            sens = _sensitivity(model, _reference(fp32_model, per_channel, trust_model_code), val_ds, sensitivity_json,
                                sensitivity_md)
            metrics["most_sensitive_layer"] = sens[0]["layer"] if sens else ""
        if mixed_out is not None:
            mixed, info = _mixed(cfg, fp32_model, model, metrics, sens, train_ds, val_ds, test_ds, per_channel,
                                 trust_model_code)
            metrics["mixed"] = info
            save_model(mixed, mixed_out)
        seconds = round(time.monotonic() - t0, 2)
    save_model(model, model_out)
    if skipped:
        metrics["not_built"] = {v: reason for v, (_, reason) in skipped.items()}
    if history_path is not None:
        write_text(history_path, history_csv(rows))
    log(f"qat: test accuracy {metrics['test_accuracy']:.4f} -> {model_out}")
    return {**metrics, "timings": {"training_seconds": seconds}}


def _nothing_to_build(skipped: dict, model_out: Any, mixed_out: Any, history_path: Any, sensitivity_json: Any,
                      sensitivity_md: Any) -> dict[str, Any]:
    """Markers and empty reports in place of every output: nothing here is requested or buildable."""
    mark(model_out, ["qat_int8"], skipped)
    mark(mixed_out, ["mixed"], skipped)
    why = {v: reason for v, (_, reason) in skipped.items()}
    if sensitivity_json is not None:
        write_json(sensitivity_json, {"method": "not run: no QAT model built", "images": 0, "layers": [], "not_built": why})
    if sensitivity_md is not None:
        write_text(sensitivity_md, "# Quantization sensitivity\n\nNot run: no QAT model was built this run.\n")
    if history_path is not None:
        write_text(history_path, history_csv([]))
    return {"not_built": why}


def _reference(fp32_model: str | Path, per_channel: bool, trust_code: bool) -> Any:
    """The FP32 model the QAT model was wrapped from (BatchNorms folded for per-tensor QAT)."""
    model = load_model(fp32_model, trust_code=trust_code)
    if per_channel:
        return model
    from edgeqat.models.batchnorm import fold_batchnorm

    return fold_batchnorm(model)[0]


def _sensitivity(model: Any, reference: Any, val_ds: Any, out_json: Any, out_md: Any) -> list[dict]:
    from edgeqat.compression.sensitivity import layer_sensitivity

    xs, n = [], 0
    for x, _ in val_ds:
        xs.append(x.numpy())
        n += len(xs[-1])
        if n >= 256:
            break
    rows = layer_sensitivity(reference, model, np.concatenate(xs)[:256])
    if rows:
        log(f"qat: most quantization-sensitive layer: {rows[0]['layer']} (relative error {rows[0]['relative_error']:.3f})")
    doc = {"method": "keras: QAT fake-quant vs FP32 float activations, each unit fed the FP32 input (isolated)",
           "images": int(min(n, 256)), "layers": rows}
    if out_json is not None:
        write_json(out_json, doc)
    if out_md is not None:
        from edgeqat.compression.sensitivity import sensitivity_markdown

        write_text(out_md, sensitivity_markdown(rows))
    return rows


def _train_mixed(cfg: QatConfig, fp32: Any, keep: list[str], train_ds: Any, val_ds: Any,
                 per_channel: bool) -> tuple[Any, float]:
    from edgeqat.compression.mixed import quantize_keep_float

    model = quantize_keep_float(fp32, keep, per_channel)
    compile_classifier(model, cfg.learning_rate)
    fit(model, train_ds, val_ds, cfg.epochs, 0, tag=f"qat mixed (float: {', '.join(keep) or 'none'})")
    return model, accuracy(model, val_ds)


def _mixed(cfg: QatConfig, fp32_model: str | Path, qat_model: Any, qat_metrics: dict, sens: list[dict] | None,
           train_ds: Any, val_ds: Any, test_ds: Any, per_channel: bool, trust_code: bool) -> tuple[Any, dict]:
    """The mixed-precision QAT model and what was kept float (and why)."""
    from edgeqat.compression.mixed import closure, resolve_keep_float

    fp32 = load_model(fp32_model, trust_code=trust_code)
    fp32_val = accuracy(fp32, val_ds)
    info: dict[str, Any] = {"fp32_val_accuracy": fp32_val}
    if not cfg.auto_keep_float:
        keep = resolve_keep_float(fp32, cfg.keep_float)
        model, val = (qat_model, qat_metrics["val_accuracy"]) if not keep else _train_mixed(cfg, fp32, keep, train_ds, val_ds, per_channel)
    else:
        keep, model, val = [], qat_model, qat_metrics["val_accuracy"]
        trials = []
        ranked = [r["layer"] for r in (sens or [])]
        while fp32_val - val > cfg.max_accuracy_drop and len(trials) < 4:
            nxt = next((n for n in ranked if n not in keep), None)
            if nxt is None:
                break
            keep = [n for n in ranked if n in closure(fp32, nxt, set(keep))] + \
                   sorted(closure(fp32, nxt, set(keep)) - set(ranked))
            model, val = _train_mixed(cfg, fp32, keep, train_ds, val_ds, per_channel)
            trials.append({"keep_float": list(keep), "val_accuracy": val})
            log(f"qat: auto_keep_float: float {keep} -> val accuracy {val:.4f} (FP32 {fp32_val:.4f})")
        info["trials"] = len(trials)
        info["met_max_accuracy_drop"] = fp32_val - val <= cfg.max_accuracy_drop
        info["plain_val_accuracy"] = qat_metrics["val_accuracy"]
    if not keep:
        log("qat: mixed: no layer kept float -> the mixed model is the plain QAT model")
    info.update({"keep_float_layers": ", ".join(keep), "num_float_layers": len(keep), "val_accuracy": val,
                 "test_accuracy": accuracy(model, test_ds)})
    return model, info
