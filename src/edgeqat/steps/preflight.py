"""preflight: before any training, can the model this run trains pass every required device?

The model -- ``train.model`` at ``train.alpha`` on the prepared image size, or the user's
``train.from_model`` -- is built untrained and converted to the TFLite file it will become:
the variant ``validate.model`` names (the QAT family as post-training int8 of the same graph,
which has the same flatbuffer size, ops, activations and multiply-accumulates), calibrated on
a few calibration images. Size, arena, RAM, latency estimate and ops depend on the graph,
not on the weights, so the figures are the ones validation will find after training. Each
device of ``validate.required_devices`` is checked against its budgets
(:mod:`edgeqat.devices.preflight`). One that cannot pass stops the run here, with the figure,
the budget and settings that would pass (:mod:`edgeqat.recommend.settings`).

The train stage depends on this stage's metrics file, so neither DVC nor Kubeflow start
training after a failed check. That file holds the same bytes whenever the check passes, so
a new list of required devices re-runs this check (seconds), not the training. The figures
and suggestions go to ``reports/preflight.json``, whether the check passes or not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from edgeqat.config import TrainConfig, ValidateConfig
from edgeqat.data.shards import load_meta, load_split_arrays
from edgeqat.data.transform import normalize
from edgeqat.devices.preflight import Graph, describe, figures, misses
from edgeqat.devices.runtimes.registry import runtime_for
from edgeqat.devices.profiles import resolve_profiles
from edgeqat.errors import DeviceBudgetError
from edgeqat.io import log, write_json
from edgeqat.catalog.variants import REGISTRY, STAND_IN

CALIBRATION_IMAGES = 8  # enough for the converter to set ranges; the figures do not depend on them
# How far the census's flatbuffer size may be from the converted file's (measured on the zoo's
# models: within 2% for DS-CNN and MobileNetV2, 4% over for ResNet): closer to a flash budget
# than this, the model is converted to decide.
SIZE_TOLERANCE = 0.05


def _model(cfg: TrainConfig, meta: dict) -> tuple[Any, Optional[Any], str]:
    """(the model to convert, its Keras graph or None, what it is in words)."""
    shape, classes = tuple(meta["image_shape"]), len(meta["class_names"])
    if cfg.from_model:
        from edgeqat.models.exported import ExportedModel
        from edgeqat.models.graph import flatten
        from edgeqat.models.io import check_model_fits_data, load_model

        model = load_model(cfg.from_model, trust_code=cfg.trust_model_code)
        if not isinstance(model, ExportedModel):
            model = flatten(model, cfg.from_model)
        check_model_fits_data(model, meta, cfg.from_model)
        keras = None if isinstance(model, ExportedModel) else model
        return model, keras, f"{cfg.from_model} ({'x'.join(map(str, shape))})"
    from edgeqat.models.zoo import build_model

    model = build_model(cfg.model, shape, classes, alpha=cfg.alpha, dropout=cfg.dropout)
    _like_trained(model, cfg.seed)
    return model, model, f"{cfg.model} at alpha {cfg.alpha:g} on {'x'.join(map(str, shape))} images"


def _like_trained(model: Any, seed: int) -> None:
    """Give BatchNorm statistics and biases the spread a trained model has. Untrained, every
    folded bias is zero, and the converter stores identical buffers once: the file would come
    out smaller than the trained one (measured: 177,712 vs 182,880 bytes for the default
    DS-CNN; with this, 182,880, the trained size)."""
    import numpy as np

    from edgeqat.tf_compat import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) if i in (0, 3) else
                               rng.normal(0, 0.1, w.shape).astype(w.dtype) for i, w in enumerate(ws)])
        elif ws and getattr(layer, "bias", None) is not None:
            layer.set_weights([w if w.ndim > 1 else rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in ws])


def _convert(model: Any, variant: str, prepared: Path, scheme: str) -> bytes:
    from edgeqat.quantization.converter import convert_variant

    calib, _ = load_split_arrays(prepared / "calib", limit=CALIBRATION_IMAGES)

    def representative():
        for img in calib:
            yield [normalize(img[None], scheme)]

    return convert_variant(variant, model, None, representative, "int8")


def preflight(
    cfg: TrainConfig,
    prepared: str | Path,
    report_json: str | Path,
    *,
    validate: ValidateConfig,
    channel_fraction: float = 0.3,
    channel_fractions: tuple[float, ...] = (0.3, 0.5, 0.7),
) -> dict[str, Any]:
    """``channel_fraction``: prune.channel_fraction (the channel-pruned variant's); ``channel_fractions``:
    recommend.channel_fractions (the channel-pruning settings suggested when a device fails)."""
    t0 = time.monotonic()
    prepared = Path(prepared)
    meta = load_meta(prepared)
    profiles = resolve_profiles(validate.required_devices, extra_dir=validate.profiles_dir)
    report: dict[str, Any] = {"required_devices": list(validate.required_devices), "devices": {}}
    if not profiles:
        log("preflight: no required devices (validate.required_devices is empty): nothing to check")
        write_json(report_json, report)
        return {"passed": True}

    model, keras_model, what = _model(cfg, meta)
    variant = validate.model
    entry = REGISTRY.get(variant)
    as_variant = STAND_IN if entry and entry.quantize_aware else variant  # the QAT family: int8 of the same graph
    pruned = variant == "channel_pruned_qat_int8" and keras_model is not None
    if pruned:
        from edgeqat.compression.channels import channel_prune

        model = keras_model = channel_prune(keras_model, channel_fraction)[0]
    t1 = time.monotonic()
    graph = _graph(model, as_variant, counted=not cfg.from_model, profiles=profiles, prepared=prepared, meta=meta)
    graph_s = time.monotonic() - t1
    report.update({"model": what, "variant": variant,
                   "checked_as": f"{as_variant} of the untrained model, {graph.source}",
                   "size_bytes": graph.size, "workload": graph.work.as_dict()})
    if variant == "mixed":
        report["note"] = "mixed keeps qat.keep_float layers float; checked as if every layer were int8"

    failed, search = [], None
    for prof in profiles:
        vela = graph.vela(prof) if runtime_for(prof).compiles else None
        figs = figures(prof, graph.size, graph.work, vela)
        miss = misses(figs)
        entry: dict[str, Any] = {"title": prof.title, "passed": not miss, **figs}
        if miss:
            failed.append(prof.name)
            if search is None:
                search = _search(cfg, meta, graph, keras_model, profiles, pruned)
            entry.update(search.suggest(prof, miss, list(channel_fractions)))
        report["devices"][prof.name] = entry
        log(f"preflight: {prof.name}: " + ("PASS" if not miss else "FAIL") + " ("
            + "; ".join(describe(k, f) for k, f in figs["figures"].items()) + ")")
    write_json(report_json, report)
    seconds = {"graph_seconds": round(graph_s, 2), "total_seconds": round(time.monotonic() - t0, 2)}
    if failed:
        raise DeviceBudgetError(_message(report, failed, validate, report_json, seconds["total_seconds"]))
    log(f"preflight: every required device can hold {what} ({seconds['total_seconds']:.0f} s)")
    return {"passed": True, "timings": seconds}


def _graph(model: Any, variant: str, *, counted: bool, profiles: list, prepared: Path, meta: dict) -> Graph:
    """The zoo's models in int8 are counted from their layers (the counts are the converted
    file's; a conversion takes 10-100 times longer); the rest, and a count whose size comes
    within SIZE_TOLERANCE of a flash budget, are converted."""
    if counted and variant == STAND_IN and not any(runtime_for(p).compiles for p in profiles):
        from edgeqat.models.census import census

        graph = Graph(census=census(model))
        if not any(p.flash_bytes and abs(graph.size - p.flash_bytes) <= SIZE_TOLERANCE * p.flash_bytes
                   for p in profiles):
            return graph
    return Graph(_convert(model, variant, prepared, meta["normalization"]["scheme"]))


def _search(cfg: TrainConfig, meta: dict, graph: Graph, keras_model: Any, profiles: list, pruned: bool) -> Any:
    from edgeqat.compression.channels import channel_prune
    from edgeqat.models.census import census
    from edgeqat.models.zoo import build_model
    from edgeqat.recommend.settings import Base, Search

    classes, channels = len(meta["class_names"]), meta["image_shape"][2]
    base = Base(size=graph.size, work=graph.work, census=census(keras_model) if keras_model is not None else None,
                shape=tuple(meta["image_shape"]), classes=classes, zoo=None if cfg.from_model else cfg.model,
                alpha=cfg.alpha, keras_model=keras_model, zoo_as_is=not pruned,
                vela={p.name: graph.vela(p) for p in profiles if runtime_for(p).compiles})
    return Search(base, build=lambda m, a, s: build_model(m, (s, s, channels), classes, alpha=a, dropout=cfg.dropout),
                  census=census, channel_prune=lambda m, f: channel_prune(m, f)[0])


def _message(report: dict[str, Any], failed: list[str], validate: ValidateConfig, report_json: Any,
             seconds: float) -> str:
    lines = [f"preflight: {report['model']}, as {report['variant']} ({report['checked_as']}), cannot pass "
             f"required device(s) {', '.join(failed)}; stopped before training ({seconds:.0f} s)"]
    for name in failed:
        d = report["devices"][name]
        over = misses(d)
        lines.append(f"  {name} ({d['title']}): " + "; ".join(describe(k, f) for k, f in over.items()))
        for s in d.get("settings", []):
            sets = " ".join(f"{k}={v}" for k, v in s["set"].items())
            figs = ", ".join(describe(k, f) for k, f in s["figures"].items() if k in over)
            lines.append(f"    passes with {sets}: {figs} (estimated from the graph"
                         + (f"; {s['note']}" if s.get("note") else "") + ")")
        if d.get("tried"):
            lines.append("    tried without passing: " + "; ".join(d["tried"]))
    keep = [x for x in validate.required_devices if x not in failed]
    lines.append(f"  or stop requiring it: validate.required_devices=[{','.join(keep)}] (still validated and reported)")
    lines.append(f"  set them with `dvc exp run -S KEY=VALUE` or in the params file; figures in {report_json}")
    return "\n".join(lines)
