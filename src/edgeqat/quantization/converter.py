"""Keras -> .tflite for each variant: its entry in :data:`edgeqat.catalog.variants.REGISTRY` sets the
converter's switches (docs/compression.md tables what each variant holds).

| entry | converter |
|---|---|
| ``model``: a quantize-aware model (the QAT family) | converts ``qat_model``, else ``fp32_model`` |
| ``weights`` not float32 | ``Optimize.DEFAULT`` (int8 weights, float32 activations: dynamic-range kernels) |
| ``weights`` float16 | float16 as the supported type |
| ``activations`` int8 / int16, from the FP32 model | calibrated on the representative data, integer-only kernels forced (int16: the 16x8 op set) |
| ``activations`` int8, from a QAT model | its learnt ranges; integer-only-ness is read from the file after (model card) |
| ``activations`` int8 | I/O ``convert.io_dtype`` |
| ``activations`` int16 | I/O int16 (float32 if ``convert.io_dtype`` is) |

``per_channel=False`` (``convert.per_channel``) gives one weight scale per tensor in every
variant with quantized weights. The post-training ones get it from the converter's switches
(one for Conv/Depthwise kernels, one for Dense); a QAT model carries its scales from training
(:mod:`edgeqat.compression.schemes` wraps it per tensor when ``convert.per_channel`` is false).
The file is read back and one that still holds more than one scale for a tensor is refused,
naming it. A variant whose entry says ``not_per_tensor`` is refused (``check-params`` says so
before any work starts).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from edgeqat.errors import ModelError
from edgeqat.models.exported import tflite_converter
from edgeqat.catalog.variants import REGISTRY, unknown


def _io_type(tf: Any, io_dtype: str) -> Any:
    return {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_dtype]


def convert_variant(
    variant: str,
    fp32_model: Any,
    qat_model: Any | None,
    representative: Callable[[], Iterable[list[np.ndarray]]] | None,
    io_dtype: str = "int8",
    *,
    per_channel: bool = True,
) -> bytes:
    """``qat_model`` is the quantize-wrapped model a QAT-family variant converts (an entry with a
    ``model``); ``fp32_model`` serves the others (float and post-training)."""
    from edgeqat.tf_compat import quiet_native, tf

    if variant not in REGISTRY:
        raise ModelError(unknown(variant))
    entry = REGISTRY[variant]
    model = qat_model if entry.quantize_aware else fp32_model
    if model is None:
        raise ModelError(f"variant {variant!r} needs its " + ("quantization-aware" if entry.quantize_aware else "FP32")
                         + " model")
    if not per_channel:
        from edgeqat.config import per_tensor_refusal

        refusal = per_tensor_refusal([variant])
        if refusal:
            raise ModelError(refusal)
    conv = tflite_converter(model)  # a Keras model, or a SavedModel export (fp32 and post-training only)
    quantized = entry.weights != "float32"
    if quantized:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if entry.weights == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if not per_channel and quantized:  # the converter's own switches (dynamic-range's too)
        conv._experimental_disable_per_channel = True  # noqa: SLF001
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True  # noqa: SLF001
    if entry.activations != "float32":
        int16 = entry.activations == "int16"
        if entry.calibrated:
            if representative is None:
                raise ModelError(f"{variant} needs representative (calibration) data")
            conv.representative_dataset = representative
            # Integer-only kernels: fail loudly rather than silently fall back to float ops.
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
                if int16 else tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            ]
        # A QAT model carries its own ranges; the converter insists on calibration data
        # when TFLITE_BUILTINS_INT8 is forced, so integer-only-ness is checked after
        # conversion instead (model card `integer_only`).
        if io_dtype != "float32":
            io = tf.int16 if int16 else _io_type(tf, io_dtype)
            conv.inference_input_type = conv.inference_output_type = io
    try:
        with quiet_native():
            blob = conv.convert()
    except Exception as err:  # noqa: BLE001 - the converter raises ConverterError and friends
        raise ModelError(f"TFLite conversion of variant {variant!r} failed: {err}") from None
    return blob if per_channel else _per_tensor(variant, blob)


def _per_tensor(variant: str, blob: bytes) -> bytes:
    from edgeqat.quantization.inspect import not_per_tensor

    left = not_per_tensor(blob)
    if left:
        shown = ", ".join(f"{r['op']} {r['tensor']!r} ({r['scales']} scales)" for r in left[:3])
        more = f" and {len(left) - 3} more" if len(left) > 3 else ""
        raise ModelError(f"convert.per_channel: false cannot be honoured for variant {variant!r}: these weight "
                         f"tensors keep a scale per output channel: {shown}{more}. A QAT model must have been "
                         "trained per tensor: re-run the stage that made it with the same convert.per_channel")
    return blob

