"""The prepared-data folder: a source streamed into resized, sharded uint8 splits + meta.json
(written atomically). Used by the prepare stage and for on-site fine-tuning data (qat)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.data.base import RecordSource
from edgeqat.data.shards import ShardWriter
from edgeqat.data.transform import NORMALIZATION, to_model_pixels
from edgeqat.io import atomic_path, log, write_json
from edgeqat.progress import bar, clock


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
    what = f"prepare: writing {image_size}x{image_size}x{channels} images"
    with atomic_path(out_dir, is_dir=True) as tmp, bar(what, total) as progress:
        for name, indices in splits.items():
            writer = ShardWriter(tmp / name, shard_size, digest)
            for i in indices:
                writer.add(to_model_pixels(src.read(int(i)), image_size, channels), int(src.labels[i]))
                progress.advance()
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
    log(f"{what}: {total} done in {clock(progress.elapsed)}")
    return meta
