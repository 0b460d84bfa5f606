"""prepare: raw source -> resized, stratified, sharded train/val/test/calib splits."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.config import PrepareConfig
from edgeqat.data.base import RecordSource
from edgeqat.data.shards import ShardWriter
from edgeqat.data.sources import open_source
from edgeqat.data.split import stratified_split
from edgeqat.data.transform import NORMALIZATION, to_model_pixels
from edgeqat.errors import DataError
from edgeqat.io import Progress, atomic_path, log, write_json


def write_prepared(
    src: RecordSource,
    out_dir: str | Path,
    image_size: int,
    channels: int,
    normalize: str,
    splits: dict[str, np.ndarray],
    shard_size: int,
) -> dict[str, Any]:
    """Stream ``src`` into a prepared folder (written atomically); return its meta.json content."""
    digest = hashlib.sha256()
    k = len(src.class_names)
    counts: dict[str, dict[str, int]] = {}
    total = sum(len(ix) for ix in splits.values())
    progress = Progress(f"prepare: writing {image_size}x{image_size}x{channels} images", total)
    with atomic_path(out_dir, is_dir=True) as tmp:
        for name, indices in splits.items():
            writer = ShardWriter(tmp / name, shard_size, digest)
            for i in indices:
                writer.add(to_model_pixels(src.read(int(i)), image_size, channels), int(src.labels[i]))
                progress.update()
            writer.flush()
            per_class = np.bincount(src.labels[indices], minlength=k) if len(indices) else np.zeros(k, int)
            counts[name] = {c: int(n) for c, n in zip(src.class_names, per_class)}
        meta = {
            "class_names": list(src.class_names),
            "image_shape": [image_size, image_size, channels],
            "normalization": {"scheme": normalize, **NORMALIZATION[normalize]},
            "counts": counts,
            "sizes": {name: int(len(ix)) for name, ix in splits.items()},
            "data_sha256": digest.hexdigest(),
            "source": src.origin,
        }
        write_json(tmp / "meta.json", meta)
    progress.close()
    return meta


def prepare(cfg: PrepareConfig, out_dir: str | Path, metrics_path: str | Path | None = None) -> dict[str, Any]:
    if cfg.source == "digits" and cfg.path not in ("", "data/raw"):
        log(f"prepare: source 'digits' is built in; prepare.path={cfg.path!r} is not used")
    with open_source(cfg.source, cfg.path, follow_symlinks=cfg.follow_symlinks) as src:
        log(f"prepare: {len(src)} images in {len(src.class_names)} classes from {src.origin}")
        splits = stratified_split(src.labels, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        # Calibration for PTQ: a class-mixed subset of the training split (already shuffled).
        splits["calib"] = splits["train"][: cfg.calibration_size]
        for name in ("val", "test"):
            if len(splits[name]) == 0:
                raise DataError(
                    f"{src.origin}: {len(src)} images are too few to fill the {name} split; "
                    f"add data or raise prepare.{name}_fraction"
                )
        meta = write_prepared(src, out_dir, cfg.image_size, cfg.channels, cfg.normalize, splits, cfg.shard_size)
    metrics = {
        "num_classes": len(meta["class_names"]),
        "num_train": meta["sizes"]["train"],
        "num_val": meta["sizes"]["val"],
        "num_test": meta["sizes"]["test"],
        "num_calib": meta["sizes"]["calib"],
        "image_shape": meta["image_shape"],
        "counts": meta["counts"],
        "data_sha256": meta["data_sha256"],
    }
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    return metrics

