"""What every raw data source offers: labels up front, images one at a time.

Reading images one by one (random access) is what keeps ``prepare`` flat in memory:
only labels, a few bytes per image, are ever held for the whole data set.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from edgeqat.errors import DataError


class RecordSource(ABC):
    """A labelled image collection. ``read(i)`` returns uint8 pixels shaped (H, W, C)."""

    #: human-readable origin, used in error messages
    origin: str
    labels: np.ndarray
    class_names: list[str]

    @abstractmethod
    def read(self, i: int) -> np.ndarray: ...

    def __len__(self) -> int:
        return len(self.labels)

    def parts(self) -> list[tuple[str, int, int, bool]]:
        """Contiguous record ranges by the file or folder they come from:
        ``(name, start, stop, is_designated_test)``. A source whose files include an
        official test split (IDX ``t10k-*``, a folder's ``test/``) flags those ranges."""
        return [(Path(self.origin).name, 0, len(self), False)]

    def name(self, i: int) -> str:
        """Where record ``i`` comes from, for messages (a file, or the archive and index)."""
        return f"{self.origin}[{i}]"

    def close(self) -> None:
        """Release temporary files; safe to call twice."""

    def __enter__(self) -> "RecordSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_labels(labels: np.ndarray, class_names: list[str] | None, origin: str) -> list[str]:
    """Validate integer labels and return the class names (inferred as '0'..'K-1' if absent)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{origin}: labels must be one-dimensional, got shape {labels.shape}")
    if len(labels) == 0:
        raise DataError(f"{origin}: contains no images")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
        else:
            raise DataError(f"{origin}: labels must be integers, got dtype {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise DataError(f"{origin}: label {lo} is out of range (labels must be >= 0)")
    if class_names is None and hi >= len(labels):  # checked before a name per class is made
        raise DataError(f"{origin}: label {hi} is out of range: {len(labels)} images cannot fill {hi + 1:,} classes "
                        f"0..{hi} (labels must be 0..K-1 with images in every class; or give class_names)")
    if class_names is not None:
        if hi >= len(class_names):
            raise DataError(
                f"{origin}: label {hi} is out of range for {len(class_names)} class names "
                f"(valid labels are 0..{len(class_names) - 1})"
            )
    else:
        class_names = [str(k) for k in range(hi + 1)]
    counts = np.bincount(labels, minlength=len(class_names))
    empty = [class_names[k] for k in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(f"{origin}: class(es) {', '.join(map(repr, empty))} have no images")
    if len(class_names) < 2:
        raise DataError(f"{origin}: only one class ({class_names[0]!r}); a classifier needs at least two")
    return class_names


class TempDir:
    """A private temporary folder for decompressed copies, removed on close."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def get(self) -> Path:
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="edgeqat-src-"))
        return self.path

    def close(self) -> None:
        if self.path is not None:
            for p in self.path.iterdir():
                p.unlink()
            os.rmdir(self.path)
            self.path = None


def pread_exact(fd: int, n: int, offset: int, origin: str) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise DataError(f"{origin}: file is truncated (wanted {n} bytes at offset {offset}, got {len(data)})")
    return data
