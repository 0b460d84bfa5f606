"""Compile, fit and score a Keras classifier on prepared splits (shared by train and qat)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def outputs_logits(model: Any) -> bool:
    """False when the model ends in a softmax (a user's pretrained model may)."""
    act = getattr(model.layers[-1], "activation", None)
    return getattr(act, "__name__", "") != "softmax"


def compile_classifier(model: Any, learning_rate: float) -> None:
    from edgeqat.tf_compat import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=outputs_logits(model)),
        metrics=["accuracy"],
    )


def fit(model: Any, train_ds: Any, val_ds: Any, epochs: int, patience: int = 0, tag: str = "train") -> list[dict]:
    """Fit with per-epoch progress on stderr; returns one history row per epoch run."""
    from edgeqat.tf_compat import keras

    callbacks = []
    if patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        )
    callbacks.append(_EpochLine(keras, tag, epochs))
    hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0, callbacks=callbacks)
    h = hist.history
    return [
        {"epoch": e + 1, **{k: float(h[k][e]) for k in HISTORY_COLUMNS[1:] if k in h}}
        for e in range(len(h["loss"]))
    ]


def _EpochLine(keras: Any, tag: str, epochs: int) -> Any:
    class EpochLine(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            parts = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
            print(f"[edgeqat] {tag}: epoch {epoch + 1}/{epochs} {parts}", file=sys.stderr, flush=True)

    return EpochLine()


def predict_logits(model: Any, ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, labels) over a whole dataset, batch by batch."""
    outs, labels = [], []
    for x, y in ds:
        outs.append(model(x, training=False).numpy())
        labels.append(y.numpy())
    return np.concatenate(outs), np.concatenate(labels)


def accuracy(model: Any, ds: Any) -> float:
    out, y = predict_logits(model, ds)
    return float(np.mean(np.argmax(out, axis=-1) == y))


def history_csv(rows: list[dict]) -> str:
    lines = [",".join(HISTORY_COLUMNS)]
    for r in rows:
        lines.append(",".join("" if r.get(c) is None else f"{r[c]:.6g}" if c != "epoch" else str(r[c]) for c in HISTORY_COLUMNS))
    return "\n".join(lines) + "\n"
