"""convert: FP32 and QAT Keras models -> .tflite variants + one model_card.json beside them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeqat.config import ConvertConfig
from edgeqat.data.shards import load_meta, load_split_arrays
from edgeqat.data.transform import normalize
from edgeqat.io import CARD_NAME, atomic_path, sha256_file, write_json
from edgeqat.models.io import load_model
from edgeqat.progress import bar
from edgeqat.quantization.converter import convert_variant
from edgeqat.errors import ModelError
from edgeqat.quantization.inspect import card_facts, weight_sparsity, weight_values
from edgeqat.quantization.runtime import is_integer_only


def convert(
    cfg: ConvertConfig,
    prepared: str | Path,
    fp32_model: str | Path,
    qat_model: str | Path | None,
    out_dir: str | Path,
    metrics_path: str | Path | None = None,
    *,
    mixed_model: str | Path | None = None,
    pqat_model: str | Path | None = None,
    cqat_model: str | Path | None = None,
    pcqat_model: str | Path | None = None,
    channel_pruned_model: str | Path | None = None,
) -> dict[str, Any]:
    """``mixed_model`` / ``pqat_model`` / ``cqat_model`` / ``pcqat_model`` /
    ``channel_pruned_model`` (.h5 from the qat, prune and cluster stages) are needed only for
    the variants of the same names."""
    prepared = Path(prepared)
    meta = load_meta(prepared)
    scheme = meta["normalization"]["scheme"]
    fp32 = load_model(fp32_model)
    qat = load_model(qat_model, quantized=True) if "qat_int8" in cfg.variants and qat_model else None
    sources = {"qat_int8": qat}
    for variant, path, stage in (("mixed", mixed_model, "qat"), ("pqat_int8", pqat_model, "prune"),
                                 ("cqat_int8", cqat_model, "cluster"), ("pcqat_int8", pcqat_model, "cluster"),
                                 ("channel_pruned_qat_int8", channel_pruned_model, "prune")):
        if variant in cfg.variants:
            if path is None:
                raise ModelError(f"convert.variants: {variant!r} needs its model file; run the {stage} stage")
            sources[variant] = load_model(path, quantized=True)
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
    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    with atomic_path(out_dir, is_dir=True) as tmp, bar("convert", total=len(cfg.variants)) as progress:
        for variant in cfg.variants:
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
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    return {**metrics, "timings": {"conversion_seconds": seconds}}
