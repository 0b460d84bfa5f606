"""A prepared split as device validation and the recommendation read it: normalised images,
labels, and the FP32 Keras reference's top-1 on them. Validation reads the test split; the
recommendation searches on the validation split and reports its choice on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.data.shards import iter_shards, load_meta
from edgeqat.data.transform import normalize
from edgeqat.devices.validate import EvalData
from edgeqat.errors import DataError


def load_eval_data(prepared: str | Path, fp32_model: str | Path | None, split: str = "test", *,
                   trust_code: bool = False) -> EvalData:
    """The ``split`` (test, val), normalised as the model card says, and the Keras reference's top-1 on it
    (``trust_code``: whether the reference model's file may run code when loaded)."""
    prepared = Path(prepared)
    meta = load_meta(prepared)
    scheme = meta["normalization"]["scheme"]
    xs, ys = [], []
    for x, y in iter_shards(prepared / split):
        xs.append(normalize(x, scheme))
        ys.append(y)
    images, labels = np.concatenate(xs), np.concatenate(ys)
    ref = None
    if fp32_model is not None:
        from edgeqat.models.io import load_model

        model = load_model(fp32_model, trust_code=trust_code)
        want = tuple(model.input_shape[1:])
        if tuple(images.shape[1:]) != want:
            raise DataError(f"{prepared}: the prepared {split} images are {_shape(images.shape[1:])} but the reference "
                            f"model {fp32_model} expects {_shape(want)}; prepare the data at the model's size")
        ref = np.concatenate([np.argmax(model(images[i:i + 256], training=False).numpy(), axis=-1)
                              for i in range(0, len(images), 256)])
    return EvalData(images=images.astype(np.float32), labels=labels.astype(np.int64), reference_preds=ref)


def _shape(dims: Any) -> str:
    return "x".join(str(d) for d in dims)


def check_model_takes_data(tflite: str | Path, data: EvalData | None, prepared: str | Path | None) -> None:
    """The .tflite loads (a truncated or corrupt file is named) and takes the prepared images'
    shape: a mismatch is bad input (exit 2), not a device failing its verdict."""
    from edgeqat.quantization.runtime import load_interpreter

    want = tuple(int(d) for d in load_interpreter(tflite).get_input_details()[0]["shape"][1:])
    if data is not None and tuple(data.images.shape[1:]) != want:
        raise DataError(f"{prepared}: the prepared test images are {_shape(data.images.shape[1:])} but {tflite} "
                        f"expects {_shape(want)}; prepare the data at the model's size (prepare.image_size, channels)")
