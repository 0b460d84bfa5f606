"""train: FP32 baseline from the zoo, or a user's pretrained model (``train.from_model``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeqat.config import TrainConfig
from edgeqat.data.shards import load_meta, make_dataset
from edgeqat.io import log, maybe_atomic_dir, write_text
from edgeqat.models.exported import WHY as EXPORT_WHY, ExportedModel
from edgeqat.models.graph import flatten
from edgeqat.models.io import check_model_file, check_model_fits_data, load_model, save_model
from edgeqat.models.training import accuracy, compile_classifier, fit, history_csv


def train(
    cfg: TrainConfig,
    prepared: str | Path,
    model_out: str | Path,
    history_path: str | Path | None = None,
    *,
    tensorboard_dir: str | Path | None = None,
) -> dict[str, Any]:
    from edgeqat.models.zoo import build_model
    from edgeqat.tf_compat import set_determinism

    t0 = time.monotonic()
    if cfg.from_model:
        check_model_file(cfg.from_model)  # a bad file is refused before TensorFlow starts
    set_determinism(cfg.seed)
    meta = load_meta(prepared)
    prepared = Path(prepared)
    norm = meta["normalization"]["scheme"]
    train_ds = make_dataset(prepared / "train", norm, cfg.batch_size, shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed)
    val_ds = make_dataset(prepared / "val", norm, cfg.batch_size)
    test_ds = make_dataset(prepared / "test", norm, cfg.batch_size)

    if cfg.from_model:
        log(f"train: starting from the pretrained model {cfg.from_model} (no training)")
        # a Keras 3 file is checked against Keras 3 on the images it will see
        samples = next(iter(val_ds.unbatch().batch(32)))[0].numpy()
        model = load_model(cfg.from_model, trust_code=cfg.trust_model_code, samples=samples)
        if isinstance(model, ExportedModel):  # no layers: kept as the SavedModel it is
            log(f"train: {cfg.from_model}: {EXPORT_WHY}; fp32 and the post-training variants are built from it")
        else:
            model = flatten(model, cfg.from_model)
            compile_classifier(model, cfg.learning_rate)
        check_model_fits_data(model, meta, cfg.from_model)
        rows = [{"epoch": 0, "val_accuracy": accuracy(model, val_ds)}]
        if tensorboard_dir is not None:  # the stage's output folder exists either way
            with maybe_atomic_dir(tensorboard_dir) as tb:
                (tb / "README.txt").write_text(f"no training: started from {cfg.from_model}\n")
    else:
        shape = tuple(meta["image_shape"])
        model = build_model(cfg.model, shape, len(meta["class_names"]), alpha=cfg.alpha, dropout=cfg.dropout, weights=cfg.weights)
        log(f"train: {model.name} with {model.count_params():,} parameters on {meta['sizes']['train']} images")
        compile_classifier(model, cfg.learning_rate)
        with maybe_atomic_dir(tensorboard_dir) as tb:
            rows = fit(model, train_ds, val_ds, cfg.epochs, cfg.early_stopping_patience, tag="train", log_dir=tb)

    metrics = {
        "val_accuracy": accuracy(model, val_ds),
        "test_accuracy": accuracy(model, test_ds),
        "epochs_run": len(rows) if not cfg.from_model else 0,
        "parameters": int(model.count_params()),
    }
    save_model(model, model_out)
    if history_path is not None:
        write_text(history_path, history_csv(rows))
    log(f"train: test accuracy {metrics['test_accuracy']:.4f} -> {model_out}")
    return {**metrics, "timings": {"training_seconds": round(time.monotonic() - t0, 2)}}
