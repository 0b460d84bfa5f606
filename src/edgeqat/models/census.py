"""What a Keras model computes and holds, counted from its layer graph (batch 1), for comparing
two versions of one model (another width, input size or fewer channels) by ratio.

Absolute figures come from a converted .tflite (:mod:`edgeqat.devices.workload`): TFLite fuses
BatchNorm and activations into the convolutions, which a layer count does not; a ratio between
two versions of the same architecture cancels that out. The classes are the workload's:
``dense`` (Conv2D, Conv2DTranspose, the pointwise half of SeparableConv2D), ``depthwise``,
``fc`` (Dense) and ``other`` (output elements of every other layer); ``peak_activation`` is the
largest sum over one layer of its input and output elements, ``activations`` every layer's
output elements together, ``stored_bytes`` the int8 flatbuffer's bytes: the kernels, their
per-channel bias and quantization parameters, and a fixed cost per operator. Layers TFLite fuses away (BatchNorm, ReLU, zero padding, Dropout) are not
counted, so the figures come close to the converted file's, and a ratio closer still.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KEYS = ("dense", "depthwise", "fc", "other", "peak_activation", "activations", "stored_bytes")
# Flatbuffer bytes per operator besides its weights (tensor and op tables, names, activation
# quantization): measured 510-630 on the zoo's models converted to int8 (600 on average).
OP_BYTES = 600


def _elements(shape: Any) -> int:
    return int(np.prod([d for d in shape[1:] if d is not None])) if shape is not None else 0


def _shapes(shape: Any) -> list:
    return shape if isinstance(shape, list) else [shape]


def _fused(layer: Any, L: Any) -> bool:
    """Layers TFLite folds into the op before them (BatchNorm, ReLU, ReLU6) or after (the zero
    padding before a convolution), or drops (Dropout)."""
    if isinstance(layer, (L.BatchNormalization, L.ReLU, L.Dropout, L.ZeroPadding2D)):
        return True
    return isinstance(layer, L.Activation) and getattr(layer.activation, "__name__", "") in ("relu", "relu6", "linear")


def _kernels(layer: Any, L: Any) -> list[tuple[str, int, Any]]:
    """(workload class, positions the kernel is applied at, kernel) for each kernel of a layer."""
    pixels = lambda shape: _elements(shape) // (shape[-1] or 1)  # noqa: E731 - positions of one channel
    if isinstance(layer, L.SeparableConv2D):
        return [("depthwise", pixels(layer.output_shape), layer.depthwise_kernel),
                ("dense", pixels(layer.output_shape), layer.pointwise_kernel)]
    if isinstance(layer, L.DepthwiseConv2D):
        return [("depthwise", pixels(layer.output_shape), layer.depthwise_kernel)]
    if isinstance(layer, L.Conv2DTranspose):  # every input pixel scatters the whole kernel
        return [("dense", pixels(layer.input_shape), layer.kernel)]
    if isinstance(layer, L.Conv2D):
        return [("dense", pixels(layer.output_shape), layer.kernel)]
    if isinstance(layer, L.Dense):
        return [("fc", _elements(layer.input_shape) // layer.kernel.shape[0], layer.kernel)]
    return []


def census(model: Any) -> dict[str, int]:
    from edgeqat.tf_compat import keras

    L = keras.layers
    out = dict.fromkeys(KEYS, 0)
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            out["activations"] += sum(_elements(s) for s in _shapes(layer.output_shape))
            continue
        if _fused(layer, L):
            continue
        ins = sum(_elements(s) for s in _shapes(layer.input_shape))
        res = sum(_elements(s) for s in _shapes(layer.output_shape))
        out["peak_activation"] = max(out["peak_activation"], ins + res)
        out["activations"] += res
        kernels = _kernels(layer, L)
        if not kernels:
            out["other"] += res
        for cls, positions, k in kernels:
            out[cls] += positions * int(np.prod(k.shape))
            # int8 weights, and per output channel an int32 bias (BatchNorm folds into it) and a
            # float32 scale and an int64 zero point for each of the two
            channels = int(k.shape[-1]) * (int(k.shape[-2]) if k is getattr(layer, "depthwise_kernel", None) else 1)
            out["stored_bytes"] += int(np.prod(k.shape)) + 28 * channels
        out["stored_bytes"] += OP_BYTES
    return out
