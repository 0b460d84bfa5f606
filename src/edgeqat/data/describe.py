"""What a user's data set is, for `edgeqat data add`: which source reads it, its classes, and
the ``prepare.image_size`` / ``prepare.channels`` that fit its images.

The source is opened exactly as the prepare stage opens it, so data that prepare would refuse
(an empty class, a corrupt IDX file, ...) is refused here first, naming the file. Images are
sampled (evenly, at most ``SAMPLE``), not all decoded: a large folder is described in seconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeqat.data.sources import detect_source, layouts, open_source
from edgeqat.errors import DataError

SAMPLE = 200
# Larger inputs multiply training time and every device's latency and arena; 96 is the smallest
# standard MobileNet input. A user with a reason for more sets prepare.image_size.
MAX_IMAGE_SIZE = 96


@dataclass(frozen=True)
class DataDescription:
    source: str  # the name of the source that reads it (edgeqat.catalog.datasources)
    classes: list[str]
    images: int
    image_size: int
    channels: int
    why: list[str]  # how image_size and channels were chosen, one phrase each

    def params(self, path: str) -> dict[str, object]:
        return {"prepare.source": self.source, "prepare.path": path, "prepare.image_size": self.image_size,
                "prepare.channels": self.channels}


def source_kind(path: Path) -> str:
    """The name of the first source (in the table's order) whose layout ``path`` holds."""
    if not path.exists():
        raise DataError(f"{path}: not found")
    found = detect_source(path)
    if found is None and path.is_dir():
        raise DataError(f"{path}: holds no class subfolders (one subfolder of images per class is the usual layout) "
                        f"nor any other data set edgeqat reads ({layouts()})")
    if found is None:
        raise DataError(f"{path}: not a data set edgeqat reads ({layouts()})")
    return found.name


def _gray(img: np.ndarray) -> bool:
    return img.shape[-1] == 1 or bool(np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]))


def describe(path: str | Path) -> DataDescription:
    path = Path(path)
    kind = source_kind(path)
    with open_source(kind, path) as src:
        n = len(src)
        picks = np.unique(np.linspace(0, n - 1, num=min(n, SAMPLE)).round().astype(int))
        shapes, gray = Counter(), 0
        for i in picks:
            img = src.read(int(i))
            shapes[(img.shape[0], img.shape[1])] += 1
            gray += _gray(img)
        classes = list(src.class_names)
    why = []
    sides = sorted(min(h, w) for (h, w), c in shapes.items() for _ in range(c))
    side = sides[len(sides) // 2]
    (h, w), _ = shapes.most_common(1)[0]
    if len(shapes) == 1:
        why.append(f"images are {h}x{w}" if h == w else f"images are {h}x{w} (resized to a square)")
    else:
        why.append(f"image sizes vary ({len(shapes)} in {len(picks)} sampled); the median short side is {side}")
    if side > MAX_IMAGE_SIZE:
        why.append(f"capped at {MAX_IMAGE_SIZE}: larger inputs multiply training time and device latency "
                   "(set prepare.image_size for more)")
        side = MAX_IMAGE_SIZE
    channels = 1 if gray == len(picks) else 3
    why.append("grayscale" if channels == 1 else f"colour ({len(picks) - gray} of {len(picks)} sampled images)")
    return DataDescription(kind, classes, n, int(side), channels, why)
