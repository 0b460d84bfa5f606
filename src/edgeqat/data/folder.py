"""A folder with one subfolder per class of PNG/JPEG images (class name = subfolder name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgeqat.data.base import RecordSource, check_labels
from edgeqat.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def decode_image(path: Path) -> np.ndarray:
    """Decode one image file to uint8 (H, W, C) with C in {1, 3}; errors name the file."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("L" if im.mode in ("1", "LA", "I", "I;16", "F") else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot decode image: {err}") from None
    return arr[..., None] if arr.ndim == 2 else arr


class FolderSource(RecordSource):
    def __init__(self, path: str | Path) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: folder not found (prepare.path for source 'folder')")
        self.origin = str(root)
        classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"{root}: no class subfolders (expected one subfolder of images per class)")
        self.files: list[Path] = []
        labels: list[int] = []
        for k, cls in enumerate(classes):
            files = sorted(
                p for p in cls.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not files:
                raise DataError(f"{cls}: class folder is empty (no .png/.jpg/.jpeg images)")
            self.files += files
            labels += [k] * len(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = check_labels(self.labels, [c.name for c in classes], self.origin)

    def read(self, i: int) -> np.ndarray:
        return decode_image(self.files[i])
