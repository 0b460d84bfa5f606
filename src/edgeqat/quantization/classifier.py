"""A .tflite classifier as its model card describes it: raw uint8 images in, class index,
name and probabilities out. What the registered (pyfunc) model runs; no MLflow, no TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.io import load_card
from edgeqat.quantization.runtime import TFLiteClassifier


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class CardClassifier:
    """Normalisation, input quantization and class names come from the model card beside the
    ``.tflite``, and so does what the model outputs (``outputs``, read from the file at
    convert): logits get a softmax, a softmax head's probabilities are returned as they are.
    (A card written before edgeqat recorded it describes a zoo model: logits.)"""

    def __init__(self, tflite: str | Path) -> None:
        self.card = load_card(tflite)
        self.clf = TFLiteClassifier(Path(tflite))
        self.outputs_logits = self.card.get("outputs", "logits") == "logits"

    def _probabilities(self, out: np.ndarray) -> np.ndarray:
        return softmax(out) if self.outputs_logits else out

    def images(self, model_input: Any) -> np.ndarray:
        """(N, H, W[, C]) uint8 from an array, one image, or a DataFrame of flattened pixels."""
        if hasattr(model_input, "to_numpy"):
            model_input = model_input.to_numpy()
        x = np.asarray(model_input)
        shape = tuple(self.card["input_shape"])
        if x.shape == shape or (shape[-1] == 1 and x.shape == shape[:-1]):
            x = x[None]
        if x.ndim == 2 and x.shape[1] == int(np.prod(shape)):
            x = x.reshape((-1, *shape))
        if x.ndim == len(shape) and shape[-1] == 1:
            x = x[..., None]
        if x.shape[1:] != shape:
            raise ValueError(f"expected images of shape {list(shape)} (uint8 pixels), got {list(x.shape)}")
        return x

    def predict(self, model_input: Any) -> dict[str, Any]:
        x = self.images(model_input)
        norm = self.card["normalization"]
        xn = (x.astype(np.float32) - float(norm["mean"])) / float(norm["std"])
        k = len(self.card["class_names"])
        probs = np.stack([self._probabilities(self.clf(img)) for img in xn]) if len(xn) else np.zeros((0, k))
        idx = probs.argmax(axis=-1)
        return {
            "class_index": idx.astype(np.int64),
            "class_name": [str(self.card["class_names"][i]) for i in idx],
            "probability": probs.max(axis=-1).astype(np.float64) if len(xn) else np.zeros(0),
            "probabilities": [p.astype(np.float64) for p in probs],
        }
