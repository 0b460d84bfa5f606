"""Keras -> .tflite for each variant.

| variant      | from | weights | activations | I/O |
|--------------|------|---------|-------------|-----|
| fp32         | FP32 | float32 | float32     | float32 |
| ptq_dynamic  | FP32 | int8    | float32 (dynamic-range kernels) | float32 |
| ptq_float16  | FP32 | float16 | float32     | float32 |
| ptq_int8     | FP32 | int8    | int8 (calibrated on the calib split) | convert.io_dtype |
| qat_int8     | QAT  | int8    | int8 (ranges learnt during QAT)      | convert.io_dtype |
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from edgeqat.errors import ModelError

FLOAT_VARIANTS = ("fp32", "ptq_dynamic", "ptq_float16")
INT_VARIANTS = ("ptq_int8", "qat_int8")


def _io_type(tf: Any, io_dtype: str) -> Any:
    return {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_dtype]


def convert_variant(
    variant: str,
    fp32_model: Any,
    qat_model: Any | None,
    representative: Callable[[], Iterable[list[np.ndarray]]] | None,
    io_dtype: str = "int8",
) -> bytes:
    from edgeqat.tf_compat import tf

    model = qat_model if variant == "qat_int8" else fp32_model
    if model is None:
        raise ModelError(f"variant {variant!r} needs the QAT model")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "ptq_float16":
        conv.target_spec.supported_types = [tf.float16]
    if variant in INT_VARIANTS:
        if variant == "ptq_int8":
            if representative is None:
                raise ModelError("ptq_int8 needs representative (calibration) data")
            conv.representative_dataset = representative
            # Integer-only kernels: fail loudly rather than silently fall back to float ops.
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # A QAT model carries its own ranges; the converter insists on calibration data
        # when TFLITE_BUILTINS_INT8 is forced, so integer-only-ness is checked after
        # conversion instead (model card `integer_only`).
        if io_dtype != "float32":
            conv.inference_input_type = _io_type(tf, io_dtype)
            conv.inference_output_type = _io_type(tf, io_dtype)
    try:
        return conv.convert()
    except Exception as err:  # noqa: BLE001 - the converter raises ConverterError and friends
        raise ModelError(f"TFLite conversion of variant {variant!r} failed: {err}") from None
