"""Array sources: scikit-learn's bundled digits, and ``.npz`` files with arrays ``x`` and ``y``."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from edgeqat.data.base import RecordSource, TempDir, check_labels, pread_exact
from edgeqat.errors import DataError


class DigitsSource(RecordSource):
    """scikit-learn's 1,797 handwritten digits (8x8, values 0..16): real data, no download."""

    def __init__(self) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        self.origin = "sklearn digits"
        self._x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        self.labels = d.target.astype(np.int64)
        self.class_names = check_labels(self.labels, [str(c) for c in d.target_names], self.origin)

    def read(self, i: int) -> np.ndarray:
        return self._x[i]


def _to_uint8(x: np.ndarray, scale: float) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    return np.clip(np.round(x.astype(np.float32) * scale), 0, 255).astype(np.uint8)


def _member_shape(zf: zipfile.ZipFile, name: str, path: Path) -> tuple[int, ...]:
    """An array's shape from its .npy header alone (nothing of the data is read)."""
    try:
        with zf.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return tuple(read(f)[0])
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{path}: array {name!r} is not a valid .npy array: {err}") from None


def _read_member(zf: zipfile.ZipFile, name: str, path: Path) -> np.ndarray:
    """One small array of the archive, never unpickled; errors name the file and the array."""
    try:
        with zf.open(f"{name}.npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as err:
        why = "has dtype object (pickled Python objects are never loaded)" if "allow_pickle" in str(err) else f"is not a valid .npy array: {err}"
        raise DataError(f"{path}: array {name!r} {why}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{path}: array {name!r} is unreadable: {err}") from None


def holds_one_npz(path: Path) -> bool:
    """An .npz file, or a folder holding exactly one (what `edgeqat data add` reads as this source)."""
    if path.is_file():
        return path.suffix == ".npz"
    return path.is_dir() and sum(p.name.endswith(".npz") for p in path.iterdir() if not p.name.startswith(".")) == 1


class NpzSource(RecordSource):
    """``x``: (N, H, W) or (N, H, W, C) images, uint8 or float in [0, 1] or [0, 255];
    ``y``: (N,) integer labels; optional ``class_names``.

    ``x`` is copied out of the archive into a temporary ``.npy`` and read by offset, so a
    large archive is never loaded whole.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            found = sorted(path.glob("*.npz"))
            if len(found) != 1:
                raise DataError(f"{path}: expected exactly one .npz file in the folder, found {len(found)}")
            path = found[0]
        if not path.is_file():
            raise DataError(f"{path}: file not found (prepare.path for source 'npz')")
        self.origin = str(path)
        self._tmp = TempDir()
        self._fd = -1
        try:
            self._open(path)
        except Exception:
            self.close()
            raise

    def _open(self, path: Path) -> None:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise DataError(f"{path}: not a readable .npz archive: {err}") from None
        with zf:
            names = {n.removesuffix(".npy") for n in zf.namelist()}
            missing = {"x", "y"} - names
            if missing:
                raise DataError(f"{path}: missing array(s) {sorted(missing)}; arrays present: {sorted(names)}")
            x_shape, y_shape = _member_shape(zf, "x", path), _member_shape(zf, "y", path)
            # checked on the headers, before y is allocated
            if len(y_shape) != 1:
                raise DataError(f"{path}: labels must be one-dimensional (one per image), got shape {y_shape}")
            if not x_shape or y_shape[0] != x_shape[0]:
                raise DataError(f"{path}: x has {x_shape[0] if x_shape else 0} images but y has {y_shape[0]} labels "
                                f"(shapes {x_shape} and {y_shape})")
            y = _read_member(zf, "y", path)
            class_names = None
            if "class_names" in names:
                class_names = [str(c) for c in _read_member(zf, "class_names", path)]
            x_file = self._tmp.get() / "x.npy"
            with zf.open("x.npy") as src, open(x_file, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        try:
            with open(x_file, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f)
                self._offset = f.tell()
        except ValueError as err:
            raise DataError(f"{path}: array 'x' is not a valid .npy array: {err}") from None
        if dtype.hasobject:
            raise DataError(f"{path}: array 'x' has dtype object (pickled Python objects are never loaded); "
                            "save numeric pixels")
        if fortran:
            raise DataError(f"{path}: array 'x' must be a plain C-ordered numeric array")
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
            raise DataError(f"{path}: array 'x' must be (N, H, W) or (N, H, W, 1|3), got shape {shape}")
        if shape[0] != len(y):
            raise DataError(f"{path}: x has {shape[0]} images but y has {len(y)} labels (shapes {shape} and {y.shape})")
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise DataError(f"{path}: array 'x' has unsupported dtype {dtype}")
        self._dtype, self._shape = dtype, (shape[1], shape[2], shape[3] if len(shape) == 4 else 1)
        self._rec = int(np.prod(self._shape)) * dtype.itemsize
        self._fd = os.open(x_file, os.O_RDONLY)
        self.labels = np.asarray(y)
        self.class_names = check_labels(self.labels, class_names, self.origin)
        self.labels = self.labels.astype(np.int64)
        self._scale = self._value_scale() if dtype != np.uint8 else 1.0

    def _raw(self, i: int) -> np.ndarray:
        data = pread_exact(self._fd, self._rec, self._offset + i * self._rec, self.origin)
        return np.frombuffer(data, dtype=self._dtype).reshape(self._shape)

    def _value_scale(self) -> float:
        # One streaming pass decides whether non-uint8 values are in [0, 1] or [0, 255].
        hi, lo = -np.inf, np.inf
        bad = bad_images = 0
        for i in range(len(self.labels)):
            r = self._raw(i)
            if r.dtype.kind == "f":
                finite = np.isfinite(r)
                if not finite.all():  # NaN would become 0 in the uint8 cast: refuse, don't blacken
                    bad += int(r.size - np.count_nonzero(finite))
                    bad_images += 1
                    continue
            hi, lo = max(hi, float(r.max())), min(lo, float(r.min()))
        if bad:
            raise DataError(f"{self.origin}: array 'x' has {bad} NaN/Inf pixel value(s) in {bad_images} image(s)")
        if lo < 0 or hi > 255:
            raise DataError(f"{self.origin}: pixel values span [{lo}, {hi}]; expected [0, 1] or [0, 255]")
        return 255.0 if hi <= 1.0 else 1.0

    def read(self, i: int) -> np.ndarray:
        return _to_uint8(self._raw(i), self._scale)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tmp.close()
