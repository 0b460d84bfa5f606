"""The prepared-split format: fixed-size shards of uint8 images, streamed back through tf.data.

Layout of a prepared folder::

    meta.json                       class names, image shape, normalisation, counts, checksum
    <split>/shard-00000.x.npy       uint8 (n, H, W, C), n <= shard_size
    <split>/shard-00000.y.npy       int64 (n,)

Plain ``.npy`` pairs are byte-for-byte deterministic (``.npz`` stamps the time), so a
forced re-run yields identical files and DVC sees no change. Memory use is one shard,
whatever the data set size.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeqat.errors import DataError
from edgeqat.io import read_json

SPLITS = ("train", "val", "test", "calib")


class ShardWriter:
    """Fills one preallocated shard at a time: memory is one shard, whatever the data size."""

    def __init__(self, folder: Path, shard_size: int, digest: "hashlib._Hash") -> None:
        self.folder, self.shard_size, self.digest = folder, shard_size, digest
        folder.mkdir(parents=True, exist_ok=True)
        self._x: np.ndarray | None = None
        self._y = np.zeros(shard_size, dtype=np.int64)
        self._n = 0
        self.count = 0
        self._shards = 0

    def add(self, image: np.ndarray, label: int) -> None:
        if self._x is None:
            self._x = np.empty((self.shard_size, *image.shape), dtype=np.uint8)
        self._x[self._n] = image
        self._y[self._n] = label
        self._n += 1
        if self._n >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._n or self._x is None:
            return
        x, y = self._x[: self._n], self._y[: self._n]
        stem = self.folder / f"shard-{self._shards:05d}"
        np.save(f"{stem}.x.npy", x)
        np.save(f"{stem}.y.npy", y)
        self.digest.update(x.tobytes())
        self.digest.update(y.tobytes())
        self.count += self._n
        self._shards += 1
        self._n = 0


def shard_files(folder: str | Path) -> list[tuple[Path, Path]]:
    folder = Path(folder)
    xs = sorted(folder.glob("shard-*.x.npy"))
    return [(x, x.with_name(x.name.replace(".x.npy", ".y.npy"))) for x in xs]


def load_meta(prepared: str | Path) -> dict[str, Any]:
    path = Path(prepared) / "meta.json"
    if not path.is_file():
        raise DataError(f"{prepared}: not a prepared data folder (no meta.json); run the prepare stage first")
    return read_json(path)


def iter_shards(folder: str | Path, order_seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x uint8, y int64) one shard at a time; optionally in a seeded random shard order."""
    files = shard_files(folder)
    if not files:
        raise DataError(f"{folder}: no shards found")
    if order_seed is not None:
        files = [files[i] for i in np.random.default_rng(order_seed).permutation(len(files))]
    for xf, yf in files:
        yield np.load(xf), np.load(yf)


def count_records(folder: str | Path) -> int:
    return sum(len(np.load(yf, mmap_mode="r")) for _, yf in shard_files(folder))


def make_dataset(
    folder: str | Path,
    normalize_scheme: str,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    seed: int = 0,
):
    """A tf.data pipeline over one split: (normalised float32 image batch, int64 label batch).

    With ``shuffle_buffer`` > 0 the shard order is reshuffled each epoch (seeded) and a
    bounded shuffle buffer mixes records across shards.
    """
    from edgeqat.data.transform import NORMALIZATION
    from edgeqat.tf_compat import tf

    first_x, _ = next(iter_shards(folder))
    shape = first_x.shape[1:]
    epoch = {"n": 0}

    def gen():
        order = seed + epoch["n"] if shuffle_buffer else None
        epoch["n"] += 1
        yield from iter_shards(folder, order)

    ds = tf.data.Dataset.from_generator(
        gen,
        output_signature=(
            tf.TensorSpec((None, *shape), tf.uint8),
            tf.TensorSpec((None,), tf.int64),
        ),
    ).unbatch()
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    n = NORMALIZATION[normalize_scheme]
    mean, std = float(n["mean"]), float(n["std"])
    ds = ds.batch(batch_size).map(
        lambda x, y: ((tf.cast(x, tf.float32) - mean) / std, y), num_parallel_calls=1, deterministic=True
    )
    return ds.prefetch(2)


def load_split_arrays(folder: str | Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a (small) split fully: for the calibration set and tiny test data only."""
    xs, ys, n = [], [], 0
    for x, y in iter_shards(folder):
        xs.append(x)
        ys.append(y)
        n += len(y)
        if limit is not None and n >= limit:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)
