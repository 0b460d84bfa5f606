"""Compile, fit and score a Keras classifier on prepared splits (shared by train and qat)."""

from __future__ import annotations

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
    """Fit with progress (:func:`progress_callback`); returns one history row per epoch run.

    ``patience`` > 0: stop once ``val_loss`` has not improved for that many epochs and keep the
    weights of the best epoch (said on stderr). ``log_dir``: TensorBoard event files there
    (loss/accuracy scalars per epoch, and for a quantization-aware model the fake-quant ranges
    of every layer, ``fake_quant/...``)."""
    from edgeqat.tf_compat import keras

    callbacks = []
    if log_dir is not None:
        callbacks += [keras.callbacks.TensorBoard(str(log_dir), histogram_freq=0, write_graph=False,
                                                  update_freq="epoch", profile_batch=0),
                      _FakeQuantRanges(keras, log_dir)]
    stopper = None
    if patience > 0:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        callbacks.append(stopper)
    bars = progress_callback(keras, tag, epochs)
    try:
        hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0, callbacks=[*callbacks, bars])
    finally:
        bars.close()
    h = hist.history
    if stopper is not None:
        _say_restored(stopper, tag, len(h["loss"]), epochs, patience)
    return [
        {"epoch": e + 1, **{k: float(h[k][e]) for k in HISTORY_COLUMNS[1:] if k in h}}
        for e in range(len(h["loss"]))
    ]


def _say_restored(stopper: Any, tag: str, ran: int, epochs: int, patience: int) -> None:
    """Which epoch's weights the model kept (EarlyStopping restores the best one's)."""
    from edgeqat.io import log

    if stopper.best_weights is None:
        return
    best = f"the weights of epoch {stopper.best_epoch + 1} (val_loss {float(stopper.best):.4f})"
    if stopper.stopped_epoch > 0:
        log(f"{tag}: early stopping after epoch {ran}/{epochs} (val_loss did not improve for {patience} "
            f"epoch{'s' if patience > 1 else ''}); restored {best}")
    elif stopper.best_epoch + 1 != ran:
        log(f"{tag}: restored {best}, the best of the {ran}")


def progress_callback(keras: Any, tag: str, epochs: int, on_epoch_end: Any = None) -> Any:
    """A Keras callback showing the epochs, and the batches and validation of the current one
    (edgeqat.progress: bars on a terminal, one line per epoch in a log). ``on_epoch_end(model,
    logs)`` may add to an epoch's logs first (they go into the history). Each finished epoch is
    also reported to :mod:`edgeqat.workspace.observe` (the stage runner logs it live). Call ``close()``
    after fit, also when it raised."""
    from edgeqat.workspace.observe import epoch_end as observed
    from edgeqat.progress import bar

    class Bars(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs = self.batches = self.val = None
            self.steps: dict[str, Any] = {"fit": None, "val": None}  # known after the first epoch

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.epochs = bar(f"{tag} epoch", total=epochs)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.batches = bar("batches", total=self.params.get("steps") or self.steps["fit"])

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.batches.advance()

        def on_test_begin(self, logs: dict | None = None) -> None:
            self.val = bar("validation", total=self.steps["val"])

        def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.val.advance()

        def on_test_end(self, logs: dict | None = None) -> None:
            self.steps["val"] = self.val.count
            self.val = self._closed(self.val)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs if logs is not None else {}
            if on_epoch_end is not None:
                on_epoch_end(self.model, logs)
            self.steps["fit"] = self.batches.count
            self.batches = self._closed(self.batches)
            self.epochs.done(" ".join(f"{k}={v:.4f}" for k, v in logs.items()))
            observed(tag, epoch + 1, {k: float(v) for k, v in logs.items() if np.ndim(v) == 0})

        @staticmethod
        def _closed(b: Any) -> None:
            if b is not None:
                b.close()

        def close(self) -> None:
            for b in (self.val, self.batches, self.epochs):  # innermost first
                self._closed(b)
            self.epochs = self.batches = self.val = None

        def on_train_end(self, logs: dict | None = None) -> None:
            self.close()

    return Bars()


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

        writer: Any = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            ranges = fake_quant_ranges(self.model)
            if not ranges:  # a float model: no folder, rather than an empty TensorBoard run
                return
            if self.writer is None:
                self.writer = tf.summary.create_file_writer(str(log_dir) + "/fake_quant")
            with self.writer.as_default():
                for name, value in ranges.items():
                    tf.summary.scalar(f"fake_quant/{name}", value, step=epoch + 1)
            self.writer.flush()

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.writer is not None:
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
