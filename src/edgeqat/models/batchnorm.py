"""Fold each BatchNormalization into the convolution or Dense layer that feeds it.

Why weight clustering needs this: clustering gives a kernel ``number_of_clusters`` distinct
values, but the TFLite converter later folds the BatchNorm scale ``gamma / sqrt(var + eps)``
into the kernel, one factor per output channel. The centroids then differ from channel to
channel and the int8 tensor holds dozens of distinct codes instead of 16, which is what gzip
and Vela's weight encoder pay for. Folded first, the kernel the clustering sees is the kernel
the device stores: its 16 centroids stay 16 int8 codes under a per-tensor scale.

The folded model computes what the original computes in inference mode (moving mean and
variance), with each folded layer given a bias. A BatchNorm is folded only when it normalises
the last axis of the output of a Conv2D, DepthwiseConv2D or Dense layer without activation
that feeds nothing else; any other BatchNorm stays as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FOLDABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


def foldable_pairs(model: Any) -> dict[str, str]:
    """{batchnorm layer name: the layer it folds into} for a flat functional model."""
    pairs = {}
    for bn in model.layers:
        if type(bn).__name__ != "BatchNormalization" or len(bn.inbound_nodes) != 1:
            continue
        axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
        if axis not in (-1, len(bn.input_shape) - 1):
            continue
        feeders = bn.inbound_nodes[0].inbound_layers
        src = feeders[0] if isinstance(feeders, list) and len(feeders) == 1 else feeders
        if isinstance(src, list) or type(src).__name__ not in FOLDABLE:
            continue
        linear = getattr(src.activation, "__name__", "") == "linear"
        if linear and len(src.inbound_nodes) == 1 and len(src.outbound_nodes) == 1:
            pairs[bn.name] = src.name
    return pairs


def _scale_shift(bn: Any) -> tuple[np.ndarray, np.ndarray]:
    var, mean = bn.moving_variance.numpy(), bn.moving_mean.numpy()
    gamma = bn.gamma.numpy() if bn.scale else np.ones_like(var)
    beta = bn.beta.numpy() if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _folded_weights(layer: Any, bn: Any) -> list[np.ndarray]:
    scale, shift = _scale_shift(bn)
    kernel = layer.get_weights()[0]
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(scale.shape, kernel.dtype)
    if type(layer).__name__ == "DepthwiseConv2D":  # (kh, kw, in, multiplier): channel = in * multiplier
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # (..., out)
        kernel = kernel * scale
    return [kernel.astype(np.float32), (bias * scale + shift).astype(np.float32)]


def fold_batchnorm(model: Any) -> tuple[Any, list[str]]:
    """(a functional model with the foldable BatchNorms folded, their names).
    Returned as it is when nothing folds."""
    from edgeqat.models.graph import flatten, replay
    from edgeqat.tf_compat import keras

    model = flatten(model)  # a Sequential or nested model: one flat graph first
    pairs = foldable_pairs(model)
    if not pairs:
        return model, []
    into = {v: k for k, v in pairs.items()}  # folded layer -> its batchnorm
    new_weights: dict[str, list[np.ndarray]] = {}

    def apply(layer: Any, args: Any, kwargs: Any) -> Any:
        if layer.name in pairs:  # the folded batchnorm: its input passes through
            return args[0]
        cfg = layer.get_config()
        if layer.name in into:
            cfg["use_bias"] = True
            new_weights[layer.name] = _folded_weights(layer, model.get_layer(into[layer.name]))
        else:
            new_weights[layer.name] = layer.get_weights()
        return layer.__class__.from_config(cfg)(*args, **kwargs)

    src = model.inputs[0]
    inp = keras.Input(batch_shape=model.input_shape, dtype=src.dtype, name=src.node.layer.name)
    folded = keras.Model(inp, replay(model, [inp], apply)[0], name=model.name)
    for layer in folded.layers:
        if layer.name in new_weights:
            layer.set_weights(new_weights[layer.name])
    return folded, sorted(pairs)
