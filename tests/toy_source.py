"""A data source that is not shipped: a text file with one image per line ("label p0 p1 ... p63",
an 8x8 grayscale image). Its entry is all a source needs; test_data_sources.py registers it
and runs the prepare stage, `edgeqat data add`'s detection and the params check through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeqat.data.base import RecordSource, check_labels
from edgeqat.catalog.datasources import DataSource
from edgeqat.errors import DataError

SIDE = 8


class PixelLinesSource(RecordSource):
    def __init__(self, path: str | Path) -> None:
        self.origin = str(path)
        rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
        if any(len(r) != 1 + SIDE * SIDE for r in rows):
            raise DataError(f"{path}: every line must be a label and {SIDE * SIDE} pixels")
        self.labels = np.array([int(r[0]) for r in rows])
        self._pixels = np.array([[int(v) for v in r[1:]] for r in rows], dtype=np.uint8).reshape(-1, SIDE, SIDE, 1)
        self.class_names = check_labels(self.labels, None, self.origin)

    def read(self, i: int) -> np.ndarray:
        return self._pixels[i]


def holds_pixel_lines(path: Path) -> bool:
    return path.is_file() and path.suffix == ".pixels"


ENTRY = DataSource("pixel_lines", "toy_source:PixelLinesSource", detect="toy_source:holds_pixel_lines",
                   layout="a .pixels text file")


def write(path: Path, n: int = 60, classes: int = 3, seed: int = 0) -> Path:
    """``n`` images, class k brighter in row block k, as lines of the toy format."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        k = i % classes
        img = rng.integers(0, 40, size=(SIDE, SIDE))
        img[k * 2:(k * 2) + 2, :] = 250
        lines.append(" ".join(map(str, [k, *img.ravel().tolist()])))
    path.write_text("\n".join(lines) + "\n")
    return path
