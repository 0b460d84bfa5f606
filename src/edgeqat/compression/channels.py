"""Structured channel pruning: drop the least important filters of convolutions and rebuild
a narrower Keras model that carries the surviving weights.

The model's tensors are sorted into *channel groups*: a Conv2D starts a group; channel-wise
layers (BatchNormalization, ReLU, DepthwiseConv2D, padding, pooling, dropout) pass their
input's group on; an element-wise merge (``Add``, ``Multiply``, ...) joins the groups of its
inputs into one, so both sides of a residual connection are pruned together, on the same
channels. A group is pruned when every tensor in it was made by a Conv2D (not the model
input, a Dense, a Concatenate or an unknown layer) and every reader of it is a Conv2D or
Dense (whose input rows are sliced to match), a channel-wise layer or a merge; a group that
reaches a model output, a Flatten, a Concatenate or any other layer keeps its width. Within
a group a channel's importance is the sum over the group's convolutions of its filter's L1
norm, scaled by the BatchNormalization that follows (see :func:`_filter_importance`).
Sequential and Functional models are both rebuilt with ``clone_model``; nested models and
shared layers are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeqat.errors import ModelError
from edgeqat.models.graph import inbound_layers

_CHANNELWISE = (
    "BatchNormalization", "ReLU", "Activation", "LeakyReLU", "DepthwiseConv2D", "Dropout",
    "SpatialDropout2D", "ZeroPadding2D", "Cropping2D", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D",
)
_MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


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
    if name in _MERGE:
        return "merge"
    return "other"


def _check_graph(model: Any) -> None:
    from edgeqat.tf_compat import keras

    for l in model.layers:
        if isinstance(l, keras.Model):
            raise ModelError(
                f"channel pruning cannot handle model {model.name!r}: layer {l.name!r} is a nested model "
                "(flatten it into one Functional model first)"
            )
        if len(l._inbound_nodes) > 1:  # noqa: SLF001
            raise ModelError(f"channel pruning cannot handle model {model.name!r}: layer {l.name!r} is shared (called {len(l._inbound_nodes)} times)")  # noqa: SLF001


def _channels(layer: Any) -> int | None:
    shape = layer.output_shape
    if isinstance(shape, list) and len(shape) == 1:  # an InputLayer reports [shape]
        shape = shape[0]
    return shape[-1] if isinstance(shape, tuple) else None


class _Groups:
    """Union-find over the layers that start a channel group (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        _check_graph(model)
        self.parent: dict[str, str] = {}
        self.group_of: dict[str, str] = {}  # layer -> the layer that started its output's group
        fixed: set[str] = set()
        for l in model.layers:  # topological order
            kind, ins = _kind(l), inbound_layers(l)
            in_groups = [self.group_of[i.name] for i in ins]
            widths = {_channels(i) for i in ins} | {_channels(l)}
            if kind == "channelwise" and len(ins) == 1:
                self.group_of[l.name] = in_groups[0]
            elif kind == "merge" and len(ins) > 1 and len(widths) == 1:
                for g in in_groups[1:]:
                    self._union(in_groups[0], g)
                self.group_of[l.name] = in_groups[0]
            else:  # a new group: pruned only if a plain Conv2D made it
                self.parent[l.name] = self.group_of[l.name] = l.name
                if kind != "conv":
                    fixed.add(l.name)
                if kind not in ("conv", "dense"):  # reads its input channels in a way we cannot slice
                    fixed.update(in_groups)
        for t in model.outputs:
            fixed.add(self.group_of[t._keras_history.layer.name])  # noqa: SLF001
        self.fixed = {self.find(g) for g in fixed}
        self.members: dict[str, list[Any]] = {}
        for l in model.layers:
            if l.name in self.parent and _kind(l) == "conv":
                self.members.setdefault(self.find(l.name), []).append(l)

    def find(self, g: str) -> str:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def _union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def root(self, layer_name: str) -> str:
        return self.find(self.group_of[layer_name])

    def prunable(self) -> dict[str, list[Any]]:
        """Group root -> its convolutions, for every group that can be narrowed."""
        return {r: convs for r, convs in self.members.items() if r not in self.fixed}


def _filter_importance(conv: Any, consumers: dict[str, list[Any]]) -> np.ndarray:
    """L1 norm of each filter, scaled by the BatchNormalization right after it (if any):
    the size of the channel the next layers see, not of the raw kernel."""
    n = int(conv.filters)
    l1 = np.abs(conv.kernel.numpy()).reshape(-1, n).sum(axis=0)
    after = consumers.get(conv.name, [])
    if len(after) == 1 and type(after[0]).__name__ == "BatchNormalization":
        bn = after[0]
        gamma = bn.gamma.numpy() if bn.scale else np.ones(n, "float32")
        l1 = l1 * np.abs(gamma) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    return l1


def prunable_convs(model: Any) -> list[str]:
    """Names of the Conv2D layers whose filters can be removed (see the module docstring)."""
    groups = _Groups(model).prunable()
    return [l.name for l in model.layers if any(l in convs for convs in groups.values())]


def channel_prune(model: Any, fraction: float) -> tuple[Any, dict[str, Any]]:
    """A narrower copy of ``model`` without the ``fraction`` lowest-importance channels of
    every prunable group; returns (model, {layer: [before, after]} + totals)."""
    from edgeqat.tf_compat import keras

    if not 0 <= fraction < 1:
        raise ModelError(f"prune.channel_fraction must be in [0, 1) (got {fraction})")
    groups = _Groups(model)
    prunable = groups.prunable()
    consumers: dict[str, list[Any]] = {}
    for l in model.layers:
        for i in inbound_layers(l):
            consumers.setdefault(i.name, []).append(l)
    if not prunable:
        raise ModelError(
            f"channel pruning cannot handle model {model.name!r}: no Conv2D whose output reaches only "
            "channel-wise layers, element-wise merges and another Conv2D/Dense (every convolution feeds "
            "a Concatenate, Flatten, another unsupported layer or the output)"
        )
    keep: dict[str, np.ndarray] = {}  # group root -> surviving channel indices
    for root, convs in prunable.items():
        n = int(convs[0].filters)
        n_keep = max(1, int(round(n * (1 - fraction))))
        l1 = sum(_filter_importance(c, consumers) for c in convs)
        keep[root] = np.sort(np.argsort(-l1, kind="stable")[:n_keep])

    def out_keep(layer: Any) -> np.ndarray | None:
        return keep.get(groups.root(layer.name))

    def in_keep(layer: Any) -> np.ndarray | None:
        ins = inbound_layers(layer)
        return out_keep(ins[0]) if len(ins) == 1 else None

    def clone(layer: Any) -> Any:
        cfg = layer.get_config()
        if _kind(layer) == "conv" and out_keep(layer) is not None:
            cfg["filters"] = int(len(out_keep(layer)))
        return layer.__class__.from_config(cfg)

    try:
        narrow = keras.models.clone_model(model, clone_function=clone)
    except Exception as err:  # noqa: BLE001 - Keras raises many types when a rebuild fails
        raise ModelError(f"channel pruning cannot rebuild model {model.name!r}: {err}") from None

    for l in model.layers:
        kind, ik, ok = _kind(l), in_keep(l), out_keep(l)
        weights = []
        for w in l.get_weights():
            if kind == "conv" and w.ndim == 4:
                w = w[:, :, ik, :] if ik is not None else w
                w = w[..., ok] if ok is not None else w
            elif kind == "conv" and w.ndim == 1:
                w = w[ok] if ok is not None else w
            elif kind == "dense" and w.ndim == 2:
                w = w[ik, :] if ik is not None else w
            elif kind == "channelwise" and ik is not None:
                w = w[:, :, ik, :] if w.ndim == 4 else w[ik]
            weights.append(w)
        if not weights:
            continue
        try:
            narrow.get_layer(l.name).set_weights(weights)
        except ValueError as err:
            raise ModelError(f"channel pruning: weights of layer {l.name!r} do not fit the rebuilt model: {err}") from None

    report = {
        c.name: [int(c.filters), int(len(keep[root]))] for root, convs in prunable.items() for c in convs
    }
    return narrow, {
        "pruned_layers": report,
        "channel_groups": len(keep),
        "residual_groups": sum(len(convs) > 1 for convs in prunable.values()),
        "params_before": int(model.count_params()),
        "params_after": int(narrow.count_params()),
    }
