"""Bring a user's Keras model into the one shape every stage handles.

Stages walk the layer graph (mixed precision, channel pruning, sensitivity) and tfmot
quantizes flat graphs only ("Quantizing a tf.keras Model inside another tf.keras Model is
not supported"). Users' models come as ``Sequential`` (whose ``model.layers`` leaves out
the InputLayer its nodes point at), or as a functional head around a nested backbone
(``keras.applications.MobileNetV2(include_top=False)`` called as one layer). Both are
rebuilt here as one flat functional graph with the same layer names and weights, so the
result computes exactly what the user's model computed.

What cannot be rebuilt is refused up front with the reason: a subclassed model (no layer
graph to read), several inputs or outputs, a non-image input.
"""

from __future__ import annotations

from typing import Any

from edgeqat.errors import ModelError


def inbound_layers(layer: Any) -> list[Any]:
    """The layers feeding ``layer``'s first call (Keras 2 exposes the graph through its nodes)."""
    nodes = layer._inbound_nodes  # noqa: SLF001
    if not nodes:
        return []
    ins = nodes[0].inbound_layers
    return list(ins) if isinstance(ins, (list, tuple)) else [ins]


def _is_model(layer: Any) -> bool:
    from edgeqat.tf_compat import keras

    return isinstance(layer, keras.Model)


def check_supported(model: Any, origin: str) -> None:
    """Refuse, naming the reason, a model no stage can handle."""
    if not getattr(model, "_is_graph_network", False):
        raise ModelError(
            f"{origin}: model {model.name!r} is a subclassed Keras model ({type(model).__name__}): it has no "
            "layer graph that quantization-aware training and pruning can rewrite. Rebuild it with the "
            "Sequential or functional API (same layers, then model.set_weights(...)) and save that"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"{origin}: model {model.name!r} has {len(model.inputs)} input(s) and {len(model.outputs)} output(s); "
            "edgeqat handles image classifiers with one image input and one class-score output"
        )
    shape = tuple(model.input_shape)
    if len(shape) != 4:
        raise ModelError(f"{origin}: model {model.name!r} takes inputs shaped {shape}; edgeqat needs images (batch, H, W, C)")
    for layer in _all_layers(model):
        if _is_model(layer) and not getattr(layer, "_is_graph_network", False):
            raise ModelError(
                f"{origin}: layer {layer.name!r} of model {model.name!r} is a subclassed Keras model "
                f"({type(layer).__name__}); rebuild it with the Sequential or functional API"
            )


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if _is_model(layer):
            out += _all_layers(layer)
    return out


def needs_flattening(model: Any) -> bool:
    from edgeqat.tf_compat import keras

    return isinstance(model, keras.Sequential) or any(_is_model(l) for l in model.layers)


def flatten(model: Any, origin: str = "model") -> Any:
    """One flat functional model computing what ``model`` computes (same names, weights).
    A model that is already flat and functional is returned as it is."""
    from edgeqat.tf_compat import keras

    check_supported(model, origin)
    if not needs_flattening(model):
        return model
    src_input = model.inputs[0]
    name = src_input.node.layer.name if hasattr(src_input, "node") else "image"
    inp = keras.Input(batch_shape=model.input_shape, dtype=model.inputs[0].dtype, name=name)
    used = {name}
    clones: dict[int, Any] = {}
    out = _inline(model, [inp], clones, used)
    flat = keras.Model(inp, out[0], name=model.name)
    for old, new in clones.values():  # built by now, so the weights can be copied
        new.set_weights(old.get_weights())
    return flat


def replay(model: Any, inputs: list[Any], apply: Any) -> list[Any]:
    """Re-run ``model``'s node graph on ``inputs``: ``apply(layer, args, kwargs)`` gives each
    node's result, with the node's arguments mapped onto the new tensors. Returns the outputs."""
    from edgeqat.tf_compat import tf

    tensors: dict[int, Any] = {id(t): x for t, x in zip(model.inputs, inputs)}

    def mapped(struct: Any) -> Any:
        return tf.nest.map_structure(lambda t: tensors.get(id(t), t), struct)

    for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001 - Keras' own traversal order
        for node in model._nodes_by_depth[depth]:  # noqa: SLF001
            if node.is_input:
                continue
            result = apply(node.layer, mapped(node.call_args), mapped(node.call_kwargs))
            for t, x in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(result)):
                tensors[id(t)] = x
    return [tensors[id(t)] for t in model.outputs]


def _inline(model: Any, inputs: list[Any], clones: dict[int, Any], used: set[str]) -> list[Any]:
    """Re-run ``model``'s node graph on ``inputs`` with fresh layers; nested models inline."""
    from edgeqat.tf_compat import tf

    def apply(layer: Any, args: Any, kwargs: Any) -> Any:
        if _is_model(layer):
            outs = _inline(layer, tf.nest.flatten(args[0] if len(args) == 1 else args), clones, used)
            return outs[0] if len(outs) == 1 else outs
        return _clone(layer, clones, used)(*args, **kwargs)

    return replay(model, inputs, apply)


def _clone(layer: Any, clones: dict[int, Any], used: set[str]) -> Any:
    """One fresh copy per original layer (a shared layer stays shared); a name already
    taken by an outer layer gets a suffix, since Keras needs unique names in one model."""
    if id(layer) in clones:
        return clones[id(layer)][1]
    cfg = layer.get_config()
    name, k = cfg.get("name", layer.name), 1
    while name in used:
        name, k = f"{layer.name}_{k}", k + 1
    used.add(name)
    cfg["name"] = name
    new = layer.__class__.from_config(cfg)
    clones[id(layer)] = (layer, new)
    return new
