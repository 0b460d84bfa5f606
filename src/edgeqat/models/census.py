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
        spatial = lambda s: _elements(s) // (s[-1] or 1)  # noqa: E731 - pixels of one channel
        kernels = []
        if isinstance(layer, L.SeparableConv2D):
            kernels = [layer.depthwise_kernel, layer.pointwise_kernel]
            out["depthwise"] += spatial(layer.output_shape) * int(np.prod(kernels[0].shape))
            out["dense"] += spatial(layer.output_shape) * int(np.prod(kernels[1].shape))
        elif isinstance(layer, L.DepthwiseConv2D):
            kernels = [layer.depthwise_kernel]
            out["depthwise"] += spatial(layer.output_shape) * int(np.prod(kernels[0].shape))
        elif isinstance(layer, L.Conv2DTranspose):
            kernels = [layer.kernel]
            out["dense"] += spatial(layer.input_shape) * int(np.prod(kernels[0].shape))
        elif isinstance(layer, L.Conv2D):
            kernels = [layer.kernel]
            out["dense"] += spatial(layer.output_shape) * int(np.prod(kernels[0].shape))
        elif isinstance(layer, L.Dense):
            kernels = [layer.kernel]
            out["fc"] += (_elements(layer.input_shape) // layer.kernel.shape[0]) * int(np.prod(kernels[0].shape))
        else:
            out["other"] += res
        # int8 weights, and per output channel an int32 bias (BatchNorm folds into it) and a float32
        # scale and an int64 zero point for each of the two
        out["stored_bytes"] += OP_BYTES + sum(int(np.prod(k.shape)) for k in kernels)
        out["stored_bytes"] += 28 * sum(int(k.shape[-1]) * (int(k.shape[-2]) if k is getattr(layer, "depthwise_kernel", None) else 1)
                                   for k in kernels)
    return out
