"""Structured channel pruning: drop the lowest-L1 filters of convolutions and rebuild a
narrower Keras model that carries the surviving weights.

A Conv2D's filters can be removed when every path from its output reaches, through
channel-wise layers only (BatchNormalization, ReLU, DepthwiseConv2D, padding, pooling,
dropout), a layer that merely *reads* the channels (a Conv2D or Dense, whose input rows are
sliced to match). A convolution whose output reaches an ``Add`` / ``Concatenate`` (a
residual connection ties its channels to another branch) or a model output is left at its
width, so residual networks are pruned inside their blocks. Sequential and Functional
models are both rebuilt with ``clone_model``; nested models and shared layers are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeqat.errors import ModelError

_CHANNELWISE = (
    "BatchNormalization", "ReLU", "Activation", "LeakyReLU", "DepthwiseConv2D", "Dropout",
    "SpatialDropout2D", "ZeroPadding2D", "Cropping2D", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D",
)


def _kind(layer: Any) -> str:
    name = type(layer).__name__
    if name == "Conv2D" and getattr(layer, "groups", 1) == 1:
        return "conv"
    if name == "Dense":
        return "dense"
    if name == "DepthwiseConv2D" and getattr(layer, "depth_multiplier", 1) != 1:
        return "other"
    if name in _CHANNELWISE:
        return "channelwise"
    return "other"


def _inbound(layer: Any) -> list[Any]:
    nodes = layer._inbound_nodes  # noqa: SLF001 - Keras 2 exposes the graph this way
    if not nodes:
        return []
    ins = nodes[0].inbound_layers
    return list(ins) if isinstance(ins, (list, tuple)) else [ins]


def _graph(model: Any) -> tuple[list[Any], dict[str, list[Any]], set[str]]:
    from edgeqat.tf_compat import keras

    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    for l in layers:
        if isinstance(l, keras.Model):
            raise ModelError(
                f"channel pruning cannot handle model {model.name!r}: layer {l.name!r} is a nested model "
                "(flatten it into one Functional model first)"
            )
        if len(l._inbound_nodes) > 1:  # noqa: SLF001
            raise ModelError(f"channel pruning cannot handle model {model.name!r}: layer {l.name!r} is shared (called {len(l._inbound_nodes)} times)")  # noqa: SLF001
    consumers: dict[str, list[Any]] = {l.name: [] for l in model.layers}
    for l in layers:
        for src in _inbound(l):
            consumers.setdefault(src.name, []).append(l)
    outputs = {t._keras_history.layer.name for t in model.outputs}  # noqa: SLF001
    return layers, consumers, outputs


def prunable_convs(model: Any) -> list[str]:
    """Names of the Conv2D layers whose filters can be removed (see the module docstring)."""
    layers, consumers, outputs = _graph(model)
    names = []
    for conv in layers:
        if _kind(conv) != "conv":
            continue
        ok, stack, seen = conv.name not in outputs, list(consumers[conv.name]), set()
        if not stack:
            ok = False
        while ok and stack:
            x = stack.pop()
            if x.name in seen:
                continue
            seen.add(x.name)
            kind = _kind(x)
            if kind in ("conv", "dense"):
                continue
            if kind != "channelwise" or len(_inbound(x)) != 1 or x.name in outputs or not consumers[x.name]:
                ok = False
            else:
                stack.extend(consumers[x.name])
        if ok:
            names.append(conv.name)
    return names


def channel_prune(model: Any, fraction: float) -> tuple[Any, dict[str, Any]]:
    """A narrower copy of ``model`` without the ``fraction`` lowest-L1 filters of every
    prunable convolution; returns (model, {layer: [before, after]} + totals)."""
    from edgeqat.tf_compat import keras

    if not 0 <= fraction < 1:
        raise ModelError(f"prune.channel_fraction must be in [0, 1) (got {fraction})")
    layers, _, _ = _graph(model)
    targets = prunable_convs(model)
    if not targets:
        raise ModelError(
            f"channel pruning cannot handle model {model.name!r}: no Conv2D whose output reaches only "
            "channel-wise layers and another Conv2D/Dense (every convolution feeds an Add, Concatenate, "
            "Flatten or the output)"
        )
    keep: dict[str, np.ndarray] = {}
    for name in targets:
        kernel = model.get_layer(name).kernel.numpy()
        n = kernel.shape[-1]
        n_keep = max(1, int(round(n * (1 - fraction))))
        l1 = np.abs(kernel).reshape(-1, n).sum(axis=0)
        keep[name] = np.sort(np.argsort(-l1, kind="stable")[:n_keep])

    # Which input/output channels survive, layer by layer (model.layers is topological).
    out_keep: dict[str, np.ndarray | None] = {}
    in_keep: dict[str, np.ndarray | None] = {}
    for l in model.layers:
        ins = _inbound(l)
        src = out_keep.get(ins[0].name) if len(ins) == 1 else None
        kind = _kind(l)
        in_keep[l.name] = src if kind in ("conv", "dense", "channelwise") else None
        if l.name in keep:
            out_keep[l.name] = keep[l.name]
        elif kind == "channelwise":
            out_keep[l.name] = src
        else:
            out_keep[l.name] = None

    def clone(layer: Any) -> Any:
        cfg = layer.get_config()
        if layer.name in keep:
            cfg["filters"] = int(len(keep[layer.name]))
        return layer.__class__.from_config(cfg)

    try:
        narrow = keras.models.clone_model(model, clone_function=clone)
    except Exception as err:  # noqa: BLE001 - Keras raises many types when a rebuild fails
        raise ModelError(f"channel pruning cannot rebuild model {model.name!r}: {err}") from None

    for l in layers:
        new = narrow.get_layer(l.name)
        ik, ok_ = in_keep[l.name], out_keep[l.name] if l.name in keep or _kind(l) == "channelwise" else None
        weights = []
        for w in l.get_weights():
            kind = _kind(l)
            if kind == "conv" and w.ndim == 4:
                w = w[:, :, ik, :] if ik is not None else w
                w = w[..., ok_] if ok_ is not None else w
            elif kind == "conv" and w.ndim == 1:
                w = w[ok_] if ok_ is not None else w
            elif kind == "dense" and w.ndim == 2:
                w = w[ik, :] if ik is not None else w
            elif kind == "channelwise" and ik is not None:
                w = w[:, :, ik, :] if w.ndim == 4 else w[ik]
            weights.append(w)
        try:
            new.set_weights(weights)
        except ValueError as err:
            raise ModelError(f"channel pruning: weights of layer {l.name!r} do not fit the rebuilt model: {err}") from None

    report = {name: [int(model.get_layer(name).filters), int(len(k))] for name, k in keep.items()}
    summary = {
        "pruned_layers": report,
        "params_before": int(model.count_params()),
        "params_after": int(narrow.count_params()),
    }
    return narrow, summary
