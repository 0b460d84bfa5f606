"""Compile, fit and score a Keras classifier on prepared splits (shared by train and qat)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def outputs_logits(model: Any) -> bool:
    """False when the model ends in a softmax (a user's pretrained model may)."""
    last = model.layers[-1]
    if type(last).__name__ == "Softmax":
        return False
    return getattr(getattr(last, "activation", None), "__name__", "") != "softmax"


def compile_classifier(model: Any, learning_rate: Any, from_logits: bool | None = None) -> None:
    """Adam + sparse cross-entropy; ``learning_rate`` a float or a Keras schedule;
    ``from_logits`` None: read from the model's last layer."""
    from edgeqat.tf_compat import keras

    if from_logits is None:
        from_logits = outputs_logits(model)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )


def fit(model: Any, train_ds: Any, val_ds: Any, epochs: int, patience: int = 0, tag: str = "train",
        log_dir: Any = None) -> list[dict]:
    """Fit with per-epoch progress on stderr; returns one history row per epoch run.

    ``log_dir``: TensorBoard event files there (loss/accuracy scalars per epoch, and for a
    quantization-aware model the fake-quant ranges of every layer, ``fake_quant/...``)."""
    from edgeqat.tf_compat import keras

    callbacks = []
    if log_dir is not None:
        callbacks += [keras.callbacks.TensorBoard(str(log_dir), histogram_freq=0, write_graph=False,
                                                  update_freq="epoch", profile_batch=0),
                      _FakeQuantRanges(keras, log_dir)]
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


def fake_quant_ranges(model: Any) -> dict[str, float]:
    """Every min/max variable of the quantize wrappers (weights and activation ranges), by name."""
    out = {}
    for layer in model.layers:
        for w in getattr(layer, "weights", []):
            name = w.name.split(":")[0]
            if name.endswith(("_min", "_max")) and w.shape.rank == 0:
                out[f"{layer.name}/{name.split('/')[-1]}"] = float(w.numpy())
    return out


def _FakeQuantRanges(keras: Any, log_dir: Any) -> Any:
    from edgeqat.tf_compat import tf

    class FakeQuantRanges(keras.callbacks.Callback):
        """The ranges QAT learns, per layer and epoch: where quantization clips (seen in TensorBoard)."""

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.writer = tf.summary.create_file_writer(str(log_dir) + "/fake_quant")

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            ranges = fake_quant_ranges(self.model)
            with self.writer.as_default():
                for name, value in ranges.items():
                    tf.summary.scalar(f"fake_quant/{name}", value, step=epoch + 1)
            self.writer.flush()

        def on_train_end(self, logs: dict | None = None) -> None:
            self.writer.close()

    return FakeQuantRanges()


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


def history_csv(rows: list[dict], columns: tuple[str, ...] = HISTORY_COLUMNS) -> str:
    lines = [",".join(columns)]
    for r in rows:
        lines.append(",".join("" if r.get(c) is None else f"{r[c]:.6g}" if c != "epoch" else str(r[c]) for c in columns))
    return "\n".join(lines) + "\n"
