"""Pick the raw data reader named by ``prepare.source``."""

from __future__ import annotations

from pathlib import Path

from edgeqat.data.base import RecordSource
from edgeqat.errors import DataError


def open_source(source: str, path: str | Path | None, *, follow_symlinks: bool = False,
                alpha_background: str = "white") -> RecordSource:
    if source == "digits":
        from edgeqat.data.arrays import DigitsSource

        return DigitsSource()
    if path is None:
        raise DataError(f"source {source!r} needs a path")
    if source == "idx":
        from edgeqat.data.idx import IdxSource

        return IdxSource(path)
    if source == "folder":
        from edgeqat.data.folder import FolderSource

        return FolderSource(path, follow_symlinks=follow_symlinks, alpha_background=alpha_background)
    if source == "npz":
        from edgeqat.data.arrays import NpzSource

        return NpzSource(path)
    raise DataError(f"unknown data source {source!r} (choose digits, idx, folder or npz)")
