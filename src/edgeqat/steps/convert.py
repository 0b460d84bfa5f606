"""convert: FP32 and QAT Keras models -> .tflite variants + one model_card.json beside them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeqat.config import ConvertConfig
from edgeqat.data.shards import load_meta, load_split_arrays
from edgeqat.data.transform import normalize
from edgeqat.io import CARD_NAME, atomic_path, log, sha256_file, write_json
from edgeqat.models.absent import absent
from edgeqat.models.io import load_model
from edgeqat.progress import bar
from edgeqat.quantization.converter import convert_variant
from edgeqat.errors import ModelError
from edgeqat.quantization.inspect import card_facts, weight_sparsity, weight_values
from edgeqat.quantization.runtime import is_integer_only
from edgeqat.catalog.variants import REGISTRY, in_order


def convert(
    cfg: ConvertConfig,
    prepared: str | Path,
    fp32_model: str | Path,
    qat_model: str | Path | None,
    out_dir: str | Path,
    *,
    mixed_model: str | Path | None = None,
    pqat_model: str | Path | None = None,
    cqat_model: str | Path | None = None,
    pcqat_model: str | Path | None = None,
    channel_pruned_model: str | Path | None = None,
    trust_model_code: bool = False,
) -> dict[str, Any]:
    """``qat_model`` / ``mixed_model`` / ``pqat_model`` / ``cqat_model`` / ``pcqat_model`` /
    ``channel_pruned_model`` (.h5 from the qat, prune and cluster stages) are needed only for
    the variants whose entries name them (edgeqat.catalog.variants). ``trust_model_code``: the run's
    trust decision for the model files read."""
    prepared = Path(prepared)
    meta = load_meta(prepared)
    scheme = meta["normalization"]["scheme"]
    fp32 = load_model(fp32_model, trust_code=trust_model_code)
    # The quantize-aware models' files, by the keyword a variant's entry names (edgeqat.catalog.variants).
    files = {"qat_model": qat_model, "mixed_model": mixed_model, "pqat_model": pqat_model, "cqat_model": cqat_model,
             "pcqat_model": pcqat_model, "channel_pruned_model": channel_pruned_model}
    sources: dict[str, Any] = {}
    not_built: dict[str, str] = {}  # requested, but its model cannot be made from this FP32 model
    for variant in in_order(cfg.variants):
        entry = REGISTRY[variant]
        if entry.model is None:
            continue
        path, stage = files[entry.model], entry.needs[-1]
        if path is None:
            raise ModelError(f"convert.variants: {variant!r} needs its model file; run the {stage} stage")
        marker = absent(path)
        if marker is not None and marker["kind"] == "cannot_build":
            not_built[variant] = marker["reason"]
            log(f"convert: {variant} not built: {marker['reason']}")
            continue
        if marker is not None:  # the stage ran for another convert.variants than this one
            raise ModelError(f"{path}: the {stage} stage did not build {variant} ({marker['reason']} when it ran); "
                             f"re-run it with this convert.variants (dvc repro does)")
        sources[variant] = load_model(path, quantized=True, trust_code=trust_model_code)
    todo = [v for v in cfg.variants if v not in not_built]
    if not todo:
        raise ModelError(f"convert: none of convert.variants {cfg.variants} can be built: "
                         + "; ".join(f"{v}: {r}" for v, r in not_built.items()))
    calib_x, _ = load_split_arrays(prepared / "calib")

    def representative():
        for img in calib_x:
            yield [normalize(img[None], scheme)]

    card: dict[str, Any] = {
        "class_names": meta["class_names"],
        "input_shape": meta["image_shape"],
        "normalization": meta["normalization"],
        "pixel_format": "uint8 pixels; model input = (pixel - mean) / std, then quantized with input scale/zero_point when the input is integer",
        "data_sha256": meta["data_sha256"],
        "fp32_model": Path(fp32_model).name,
        "variants": {},
    }
    if not_built:
        card["not_built"] = not_built
    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    with atomic_path(out_dir, is_dir=True) as tmp, bar("convert", total=len(todo)) as progress:
        for variant in todo:
            t0 = time.monotonic()
            progress.start(variant)
            blob = convert_variant(variant, fp32, sources.get(variant), representative, cfg.io_dtype,
                                   per_channel=cfg.per_channel)
            path = tmp / f"{variant}.tflite"
            path.write_bytes(blob)
            # Every fact below is read from the file (weights, activations, I/O, logits or
            # probabilities), never copied from the config that asked for it.
            card["variants"][variant] = {
                "file": path.name,
                "size_bytes": len(blob),
                "sha256": sha256_file(path),
                "integer_only": is_integer_only(blob),
                "weight_sparsity": round(weight_sparsity(blob)["sparsity"], 6),
                # distinct stored weights in the fullest output channel of any conv/dense kernel
                "weight_values_per_channel": weight_values(blob)["max_per_channel"],
                **card_facts(blob),
            }
            metrics[variant] = {k: card["variants"][variant][k] for k in ("size_bytes", "weight_sparsity",
                                                                           "weight_values_per_channel")}
            seconds[variant] = round(time.monotonic() - t0, 2)
            progress.done(f"{variant}: {len(blob):,} bytes in {seconds[variant]} s")
        write_json(tmp / CARD_NAME, card)
    if not_built:
        metrics["not_built"] = not_built
    return {**metrics, "timings": {"conversion_seconds": seconds}}
