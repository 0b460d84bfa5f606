"""Per-layer mixed precision: keep some layers in float through QAT and conversion.

A *unit* is a weighted layer (Conv2D, DepthwiseConv2D, Dense) plus the BatchNormalization
/ activation layers that directly follow it: tfmot quantizes Conv+BN+ReLU as one fused
op, so a convolution cannot be kept float while its BatchNormalization is quantized
(tfmot refuses a lone BatchNormalization). Keeping a layer float keeps its whole unit.

Only units at the start (every weighted layer before them also kept) or the end (every
weighted layer after them also kept) of the graph can stay float: tfmot fake-quantizes the
output of a float layer that feeds a quantized one, and TFLite's converter then quantizes
a float layer whose input and output ranges are both known (checked on TF 2.21: a middle
convolution kept float in Keras comes out int8 in the .tflite). A middle unit is refused
with an error that says so.

``qat.keep_float`` patterns are shell-style globs on layer names (``block1_*``), plus
``@first`` / ``@last``: the first / last weighted layer (the stem and the classifier head
whatever they are called).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from edgeqat.errors import ConfigError, ModelError
from edgeqat.models.graph import inbound_layers

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
FOLLOWERS = ("BatchNormalization", "ReLU", "Activation", "LeakyReLU")


def units(model: Any) -> dict[str, list[str]]:
    """{weighted layer name: [it, then its BN/activation followers]} in model order."""
    consumers: dict[str, list[Any]] = {}
    for l in model.layers:
        for src in inbound_layers(l):
            consumers.setdefault(src.name, []).append(l)
    out: dict[str, list[str]] = {}
    for l in model.layers:
        if type(l).__name__ not in WEIGHTED:
            continue
        chain, cur = [l.name], l
        while True:
            nxt = consumers.get(cur.name, [])
            if len(nxt) != 1 or type(nxt[0]).__name__ not in FOLLOWERS or len(inbound_layers(nxt[0])) != 1:
                break
            cur = nxt[0]
            chain.append(cur.name)
        out[l.name] = chain
    return out


def resolve_keep_float(model: Any, patterns: list[str] | tuple[str, ...]) -> list[str]:
    """Weighted-layer names the patterns select; a pattern matching none is an error."""
    us = list(units(model))
    if not us and patterns:
        raise ModelError(f"model {model.name!r} has no Conv2D/DepthwiseConv2D/Dense layer to keep in float")
    names = [l.name for l in model.layers]
    chosen: list[str] = []
    for pat in patterns:
        if pat == "@first":
            hits = us[:1]
        elif pat == "@last":
            hits = us[-1:]
        else:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
            raise ConfigError(f"qat.keep_float: pattern {pat!r} matches no layer of model {model.name!r} (layers: {shown})")
        for h in hits:
            # a BN/activation picked by name keeps the unit it belongs to
            owner = next((u for u, chain in units(model).items() if h in chain), h)
            if owner not in chosen:
                chosen.append(owner)
    _check_at_an_end(model, chosen)
    return chosen


def _weighted_reach(model: Any) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(ancestors, descendants): the weighted layers upstream / downstream of each layer."""
    weighted = {l.name for l in model.layers if type(l).__name__ in WEIGHTED}
    anc: dict[str, set[str]] = {}
    for l in model.layers:  # topological order
        a: set[str] = set()
        for src in inbound_layers(l):
            a |= anc.get(src.name, set()) | ({src.name} & weighted)
        anc[l.name] = a
    desc: dict[str, set[str]] = {l.name: set() for l in model.layers}
    for name, a in anc.items():
        for up in a:
            desc[up].add(name)
    desc = {k: v & weighted for k, v in desc.items()}
    return anc, desc


def _check_at_an_end(model: Any, keep: list[str]) -> None:
    if not keep:
        return
    anc, desc = _weighted_reach(model)
    kept = set(keep)
    for name in keep:
        if not (anc[name] <= kept or desc[name] <= kept):
            raise ConfigError(
                f"qat.keep_float: layer {name!r} of model {model.name!r} lies between quantized layers; "
                "TFLite's converter would quantize it anyway (its input and output ranges are known). "
                "Keep float only layers at the start or end of the graph (e.g. '@first', '@last'), "
                "or every layer between it and one end"
            )


def quantize_keep_float(model: Any, keep: list[str], per_channel: bool = True) -> Any:
    """QAT-wrap every layer except the units of ``keep`` (and the input layer); ``per_channel``
    False: BatchNorms folded, one weight scale per quantized kernel."""
    from edgeqat.compression.annotate import quantize

    if per_channel:
        return quantize(model, float_layers(model, keep) if keep else ())[0]
    from edgeqat.compression.schemes import per_tensor_model, plain_scheme

    model, names = per_tensor_model(model)
    floating = float_layers(model, keep) if keep else set()
    return quantize(model, floating, scheme=plain_scheme(frozenset(names - floating)))[0]


def _layer_reach(model: Any) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(ancestors, descendants) of every layer, all layer types."""
    anc: dict[str, set[str]] = {}
    for l in model.layers:
        a: set[str] = set()
        for src in inbound_layers(l):
            a |= anc.get(src.name, set()) | {src.name}
        anc[l.name] = a
    desc: dict[str, set[str]] = {l.name: set() for l in model.layers}
    for name, a in anc.items():
        for up in a:
            desc[up].add(name)
    return anc, desc


def float_layers(model: Any, keep: list[str]) -> set[str]:
    """Every layer left unquantized when the units of ``keep`` stay float: the units, plus
    the (unweighted) layers between them and the model input or output they reach, so the
    converter finds no fake-quant range on their far side."""
    us = units(model)
    wanc, _ = _weighted_reach(model)
    anc, desc = _layer_reach(model)
    kept = set(keep)
    out: set[str] = set()
    for k in keep:
        chain = us.get(k, [k])
        out |= set(chain)
        if wanc[k] <= kept:
            out |= {n for n in anc[k] if type(model.get_layer(n)).__name__ != "InputLayer"}
        else:
            out |= desc[chain[-1]]
    return out


def closure(model: Any, name: str, kept: set[str]) -> set[str]:
    """The smallest set of units containing ``kept`` and ``name`` that can stay float:
    ``name`` plus every weighted layer before it, or plus every one after it."""
    wanc, wdesc = _weighted_reach(model)
    last = units(model).get(name, [name])[-1]
    before = kept | {name} | wanc[name]
    after = kept | {name} | wdesc[last] | (wdesc[name] - {name})
    return before if len(before) <= len(after) else after
