"""MNIST-family IDX files (``*-images-idx3-ubyte`` + ``*-labels-idx1-ubyte``, gzipped or not).

Gzipped files are inflated once into a temporary file, streaming, so images can be read
by offset without holding the data set in memory.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np

from edgeqat.data.base import RecordSource, TempDir, check_labels, pread_exact
from edgeqat.errors import DataError

_UBYTE = 0x08


def _plain_copy(path: Path, tmp: TempDir) -> Path:
    if path.suffix != ".gz":
        return path
    out = tmp.get() / path.stem
    try:
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable gzip file: {err}") from None
    return out


def _header(path: Path, shown: Path, ndim: int) -> tuple[int, tuple[int, ...]]:
    """Return (data offset, dims) after checking the magic number and file size."""
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{shown}: too short to be an IDX file")
    zero, dtype, nd = struct.unpack(">HBB", head[:4])
    if zero != 0 or nd != ndim:
        raise DataError(f"{shown}: not an IDX file with {ndim} dimension(s) (magic bytes {head[:4].hex()})")
    if dtype != _UBYTE:
        raise DataError(f"{shown}: IDX element type 0x{dtype:02x} is not supported (only unsigned bytes, 0x08)")
    dims = struct.unpack(f">{ndim}I", head[4:])
    offset = 4 + 4 * ndim
    need = offset + int(np.prod(dims))
    have = os.path.getsize(path)
    if have < need:
        raise DataError(f"{shown}: truncated: header promises {need} bytes, file has {have}")
    return offset, dims


def _pairs(root: Path) -> list[tuple[Path, Path]]:
    if root.is_file():
        images = [root]
    else:
        images = sorted(p for p in root.iterdir() if "idx3" in p.name and not p.name.startswith("."))
    if not images:
        raise DataError(f"{root}: no IDX image files (*idx3-ubyte[.gz]) found")
    pairs = []
    for img in images:
        lab = img.with_name(img.name.replace("images", "labels").replace("idx3", "idx1"))
        if lab == img or not lab.exists():
            raise DataError(f"{img}: no matching labels file (expected {lab.name})")
        pairs.append((img, lab))
    return pairs


def is_test_file(name: str) -> bool:
    """MNIST's official test files are ``t10k-*``; other IDX sets name theirs ``test-*``."""
    return name.startswith(("t10k", "test"))


def holds_idx(path: Path) -> bool:
    """An IDX image file, or a folder with one (what `edgeqat data add` reads as this source)."""
    if path.is_file():
        return "idx3" in path.name and path.suffix != ".npz"
    return path.is_dir() and any("idx3" in p.name for p in path.iterdir() if not p.name.startswith("."))


class IdxSource(RecordSource):
    def __init__(self, path: str | Path) -> None:
        root = Path(path)
        if not root.exists():
            raise DataError(f"{root}: path not found (prepare.path for source 'idx')")
        self.origin = str(root)
        self._tmp = TempDir()
        self._parts: list[tuple[int, int, int, str]] = []  # (fd, offset, n, shown name)
        labels = []
        self.shape: tuple[int, int] | None = None
        try:
            for img, lab in _pairs(root):
                lab_plain = _plain_copy(lab, self._tmp)
                loff, (nl,) = _header(lab_plain, lab, 1)
                with open(lab_plain, "rb") as f:
                    f.seek(loff)
                    labels.append(np.frombuffer(f.read(nl), dtype=np.uint8).astype(np.int64))
                img_plain = _plain_copy(img, self._tmp)
                ioff, (n, h, w) = _header(img_plain, img, 3)
                if n != nl:
                    raise DataError(f"{img} has {n} images but {lab} has {nl} labels")
                if self.shape is None:
                    self.shape = (h, w)
                elif self.shape != (h, w):
                    raise DataError(f"{img}: images are {h}x{w}, earlier files are {self.shape[0]}x{self.shape[1]}")
                self._parts.append((os.open(img_plain, os.O_RDONLY), ioff, n, str(img)))
            self.labels = np.concatenate(labels)
            self.class_names = check_labels(self.labels, None, self.origin)
        except Exception:
            self.close()
            raise
        self._starts = np.cumsum([0] + [p[2] for p in self._parts])

    def parts(self) -> list[tuple[str, int, int, bool]]:
        return [(Path(shown).name, int(self._starts[k]), int(self._starts[k + 1]), is_test_file(Path(shown).name))
                for k, (_, _, _, shown) in enumerate(self._parts)]

    def read(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        fd, off, _, shown = self._parts[k]
        h, w = self.shape  # type: ignore[misc]
        raw = pread_exact(fd, h * w, off + (i - int(self._starts[k])) * h * w, shown)
        return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 1)

    def close(self) -> None:
        for fd, *_ in self._parts:
            os.close(fd)
        self._parts = []
        self._tmp.close()


def write_idx(images: np.ndarray, labels: np.ndarray, prefix: str | Path, gz: bool = False) -> tuple[Path, Path]:
    """Write uint8 images (N, H, W) and labels (N,) as an IDX pair (used by tests and bench)."""
    prefix = Path(prefix)
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.uint8)
    ext = ".gz" if gz else ""
    opener = gzip.open if gz else open
    img_path = prefix.with_name(prefix.name + f"-images-idx3-ubyte{ext}")
    lab_path = prefix.with_name(prefix.name + f"-labels-idx1-ubyte{ext}")
    with opener(img_path, "wb") as f:
        f.write(struct.pack(">HBB3I", 0, _UBYTE, 3, *images.shape))
        f.write(images.tobytes())
    with opener(lab_path, "wb") as f:
        f.write(struct.pack(">HBBI", 0, _UBYTE, 1, len(labels)))
        f.write(labels.tobytes())
    return img_path, lab_path
