"""A folder with one subfolder per class of images (class name = subfolder name).

Images are decoded as a viewer shows them: EXIF orientation applied (a phone photo taken
sideways is turned upright), 16-bit values scaled to 8 bits (not clipped to white),
transparent pixels composited onto ``prepare.alpha_background``, the first frame of a GIF.
Files of other kinds in a class folder are skipped, counted and named in one warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgeqat.data.base import RecordSource, check_labels
from edgeqat.errors import DataError
from edgeqat.io import log

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"}
# 64 Mpx (8192 x 8192): far above any classifier input, far below what a small file
# declaring a huge canvas (a decompression bomb) would make PIL allocate.
MAX_PIXELS = 1 << 26
BACKGROUNDS = {"white": 255, "black": 0}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL's modes for 16-bit grey PNGs


def _pixels(im: Image.Image, background: int) -> tuple[np.ndarray, bool]:
    """uint8 (H, W) or (H, W, 3) pixels of a decoded image, and whether alpha was composited."""
    if im.mode in _SIXTEEN_BIT:  # convert("L") would clip every value above 255 to white
        wide = np.asarray(im, dtype=np.float64)
        return np.clip(np.round(wide * (255.0 / 65535.0)), 0, 255).astype(np.uint8), False
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        grey = im.mode in ("LA", "La")
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] == 255:  # fully opaque: nothing to composite
            return np.asarray(rgba.convert("L" if grey else "RGB"), dtype=np.uint8), False
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (background,) * 3 + (255,)), rgba)
        return np.asarray(flat.convert("L" if grey else "RGB"), dtype=np.uint8), True
    if im.mode not in ("L", "RGB"):
        im = im.convert("L" if im.mode in ("1", "F") else "RGB")
    return np.asarray(im, dtype=np.uint8), False


def decode(path: Path, background: str = "white") -> tuple[np.ndarray, bool]:
    """Decode one image file to uint8 (H, W, C) with C in {1, 3}, and whether transparent
    pixels were composited onto ``background``; errors name the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:  # checked on the header, before anything is decoded
                    raise DataError(f"{path}: image declares {w}x{h} = {w * h:,} pixels, over the "
                                    f"{MAX_PIXELS:,}-pixel limit (a decompression bomb?)")
                im.load()  # a GIF: its first frame
                upright = ImageOps.exif_transpose(im)
                arr, composited = _pixels(upright, BACKGROUNDS[background])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"{path}: refused as a decompression bomb: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot decode image: {err}") from None
    return (arr[..., None] if arr.ndim == 2 else arr), composited


def decode_image(path: Path, background: str = "white") -> np.ndarray:
    """:func:`decode`'s pixels only."""
    return decode(path, background)[0]


def _class_dirs(root: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in skip)


def _within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def designated_test_dir(root: Path) -> Path | None:
    """``root/test`` when it holds class subfolders (an official test split), else None:
    a ``test`` folder of images is simply a class named "test"."""
    test = root / "test"
    return test if test.is_dir() and _class_dirs(test) else None


def holds_class_folders(path: Path) -> bool:
    """A folder with subfolders (what `edgeqat data add` reads as this source)."""
    return path.is_dir() and any(p.is_dir() for p in path.iterdir() if not p.name.startswith("."))


class FolderSource(RecordSource):
    """Classes are the subfolders of ``root`` or, when ``root/test/<class>/`` exists (the
    test split the data came with), of ``root/train/`` (or of ``root`` minus ``test/``).
    ``follow_symlinks=False`` refuses symlinked folders and links leading outside ``path``;
    ``alpha_background`` is what transparent pixels are composited onto."""

    def __init__(self, path: str | Path, *, follow_symlinks: bool = False, alpha_background: str = "white") -> None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: folder not found (prepare.path for source 'folder')")
        self.origin = str(root)
        self.background, self.composited = alpha_background, 0
        self.skipped: list[Path] = []
        real_root = root.resolve()
        test_root = designated_test_dir(root)
        train_root = root / "train" if test_root is not None and (root / "train").is_dir() else root
        classes = _class_dirs(train_root, skip=("test",) if test_root is not None else ())
        if not classes:
            raise DataError(f"{train_root}: no class subfolders (expected one subfolder of images per class)")
        names = [c.name for c in classes]
        self.files: list[Path] = []
        labels: list[int] = []
        for k, cls in enumerate(classes):
            files = sorted(self._images(cls, real_root, follow_symlinks))
            if not files:
                raise DataError(f"{cls}: class folder is empty (no {'/'.join(sorted(IMAGE_SUFFIXES))} images)")
            self.files += files
            labels += [k] * len(files)
        self._parts = [(train_root.name, 0, len(self.files), False)]
        if test_root is not None:
            unknown = [c.name for c in _class_dirs(test_root) if c.name not in names]
            if unknown:
                raise DataError(f"{test_root}: class folder(s) {unknown} are not among the training classes {names}")
            start = len(self.files)
            for cls in _class_dirs(test_root):
                files = sorted(self._images(cls, real_root, follow_symlinks))
                self.files += files
                labels += [names.index(cls.name)] * len(files)
            self._parts.append(("test", start, len(self.files), True))
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = check_labels(self.labels, names, self.origin)
        if self.skipped:
            kinds = sorted({p.suffix.lower() or "(no suffix)" for p in self.skipped})
            shown = ", ".join(str(p) for p in self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "")
            log(f"prepare: warning: skipped {len(self.skipped)} file(s) of kinds edgeqat does not read "
                f"({', '.join(kinds)}; it reads {', '.join(sorted(IMAGE_SUFFIXES))}): {shown}")

    def parts(self) -> list[tuple[str, int, int, bool]]:
        return list(self._parts)

    def _images(self, cls: Path, real_root: Path, follow: bool) -> list[Path]:
        def refuse(link: Path, what: str) -> DataError:
            return DataError(f"{link}: {what} -> {os.readlink(link)}; refused "
                             "(set prepare.follow_symlinks: true to read linked data)")

        if cls.is_symlink() and not follow:
            raise refuse(cls, "class folder is a symlink")
        out = []
        for dirpath, dirnames, filenames in os.walk(cls, followlinks=follow):
            here = Path(dirpath)
            if not follow:
                for d in dirnames:
                    if (here / d).is_symlink():
                        raise refuse(here / d, "symlinked folder")
            for f in filenames:
                p = here / f
                if f.startswith("."):
                    continue
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    self.skipped.append(p)
                    continue
                if not follow and p.is_symlink() and not _within(p, real_root):
                    raise refuse(p, "symlink pointing outside the image folder")
                out.append(p)
        return out

    def name(self, i: int) -> str:
        return str(self.files[i])

    def read(self, i: int) -> np.ndarray:
        arr, composited = decode(self.files[i], self.background)
        if composited:
            self.composited += 1
            if self.composited == 1:
                log(f"prepare: {self.files[i]} has transparent pixels: composited onto {self.background} "
                    "(prepare.alpha_background); so is every other such image")
        return arr
