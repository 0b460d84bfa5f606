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
    """Stream ``src`` into a prepared folder (written atomically); return its meta.json content
    plus ``copies_of_train`` ({split: images that are exact copies of a training image})."""
    digest = hashlib.sha256()
    k = len(src.class_names)
    counts: dict[str, dict[str, int]] = {}
    total = sum(len(ix) for ix in splits.values())
    what = f"prepare: writing {image_size}x{image_size}x{channels} images"
    hashes: dict[str, dict[int, int]] = {}  # split -> {hash of the source image: record}, for copies across splits
    with atomic_path(out_dir, is_dir=True) as tmp, bar(what, total) as progress:
        for name, indices in splits.items():
            writer = ShardWriter(tmp / name, shard_size, digest)
            seen = hashes.setdefault(name, {}) if name != "calib" else None  # calib: a subset of train
            for i in indices:
                img = src.read(int(i))
                if seen is not None:
                    key = hashlib.blake2b(img.tobytes() + str(img.shape).encode(), digest_size=8).digest()
                    seen.setdefault(int.from_bytes(key, "little"), int(i))
                writer.add(to_model_pixels(img, image_size, channels), int(src.labels[i]))
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
    meta["copies_of_train"] = copies_of_train(src, hashes)
    return meta


def copies_of_train(src: RecordSource, hashes: dict[str, dict[int, int]]) -> dict[str, int]:
    """{split: its images that are exact copies of an image the model learned from or was
    selected on (val: of train; test: of train or val)}; warns naming an example (a test/
    folder copied from train/ scores the model on images it has seen)."""
    seen = dict(hashes.get("train", {}))
    found: dict[str, int] = {}
    for name, what in (("val", "training"), ("test", "training or validation")):
        mine = hashes.get(name, {})
        dups = [(i, seen[h]) for h, i in mine.items() if h in seen]
        found[name] = len(dups)
        if dups:
            i, j = min(dups)
            log(f"prepare: warning: {len(dups)} of {len(mine)} distinct {name} image(s) are exact copies of {what} "
                f"images (e.g. {src.name(i)} = {src.name(j)}): the {name} accuracy overstates what the model does on "
                "new images; remove the copies")
        for h, i in mine.items():
            seen.setdefault(h, i)
    return found
