"""Keras -> .tflite for each variant.

| variant      | from | weights | activations | I/O |
|--------------|------|---------|-------------|-----|
| fp32         | FP32 | float32 | float32     | float32 |
| ptq_dynamic  | FP32 | int8    | float32 (dynamic-range kernels) | float32 |
| ptq_float16  | FP32 | float16 | float32     | float32 |
| ptq_int8     | FP32 | int8    | int8 (calibrated on the calib split) | convert.io_dtype |
| qat_int8     | QAT  | int8    | int8 (ranges learnt during QAT)      | convert.io_dtype |
| ptq_int16x8  | FP32 | int8    | int16 (calibrated)                   | int16 (float32 if io_dtype is) |
| mixed        | QAT with qat.keep_float layers float | int8 / float32 | int8 / float32 | float where a kept layer meets the model I/O |
| pqat_int8    | pruned FP32 -> pruning-preserving QAT | int8, sparse | int8 | convert.io_dtype |
| cqat_int8    | clustered FP32 -> cluster-preserving QAT | int8, <= cluster.number_of_clusters values per channel | int8 | convert.io_dtype |
| pcqat_int8   | pruned + clustered FP32 -> sparsity- and cluster-preserving QAT | int8, sparse and clustered | int8 | convert.io_dtype |
| channel_pruned_qat_int8 | narrower FP32 -> QAT | int8 | int8  | convert.io_dtype |

16x8 is post-training only: converting a QAT model to 16x8 fails in TF 2.21 ("not yet
supported for op: 'DEQUANTIZE'").

``per_channel=False`` (``convert.per_channel``) gives one weight scale per tensor in every
variant with quantized weights. The post-training ones get it from the converter's switches
(one for Conv/Depthwise kernels, one for Dense); a QAT model carries its scales from training
(:mod:`edgeqat.compression.schemes` wraps it per tensor when ``convert.per_channel`` is false).
The file is read back and one that still holds more than one scale for a tensor is refused,
naming it. Two variants are refused (``check-params`` says so before any work starts):
``ptq_int16x8``, whose quantizer fails on a per-tensor depthwise kernel in TF 2.21 ("Quantized
dimension for tensor property and quantization parameters do not match"), and
``ptq_dynamic``, whose file LiteRT 2.3's dynamic-range depthwise kernel runs wrong (a DS-CNN's
per-tensor dynamic-range file scored 0.089 on digits; its per-channel one 0.989).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from edgeqat.errors import ModelError
from edgeqat.models.exported import tflite_converter

FLOAT_VARIANTS = ("fp32", "ptq_dynamic", "ptq_float16")
QAT_VARIANTS = ("qat_int8", "mixed", "pqat_int8", "cqat_int8", "pcqat_int8", "channel_pruned_qat_int8")
INT_VARIANTS = ("ptq_int8", "ptq_int16x8", *QAT_VARIANTS)


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
    """``qat_model`` is the quantize-wrapped model the variant converts (QAT, mixed, PQAT, CQAT,
    PCQAT or channel-pruned QAT); ``fp32_model`` serves the float and post-training variants."""
    from edgeqat.tf_compat import quiet_native, tf

    model = qat_model if variant in QAT_VARIANTS else fp32_model
    if model is None:
        raise ModelError(f"variant {variant!r} needs its quantization-aware model")
    if not per_channel:
        from edgeqat.config import per_tensor_refusal

        refusal = per_tensor_refusal([variant])
        if refusal:
            raise ModelError(refusal)
    conv = tflite_converter(model)  # a Keras model, or a SavedModel export (fp32 and post-training only)
    if variant != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "ptq_float16":
        conv.target_spec.supported_types = [tf.float16]
    if not per_channel and variant != "fp32":  # the converter's own switches (dynamic-range's too)
        conv._experimental_disable_per_channel = True  # noqa: SLF001
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True  # noqa: SLF001
    if variant in INT_VARIANTS:
        if variant in ("ptq_int8", "ptq_int16x8"):
            if representative is None:
                raise ModelError(f"{variant} needs representative (calibration) data")
            conv.representative_dataset = representative
            # Integer-only kernels: fail loudly rather than silently fall back to float ops.
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
                if variant == "ptq_int16x8" else tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            ]
        # A QAT model carries its own ranges; the converter insists on calibration data
        # when TFLITE_BUILTINS_INT8 is forced, so integer-only-ness is checked after
        # conversion instead (model card `integer_only`).
        if variant == "ptq_int16x8":
            if io_dtype != "float32":
                conv.inference_input_type = conv.inference_output_type = tf.int16
        elif io_dtype != "float32":
            conv.inference_input_type = _io_type(tf, io_dtype)
            conv.inference_output_type = _io_type(tf, io_dtype)
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

