"""Open the data source ``prepare.source`` names, and find which source a user's path holds,
both through the table of sources (:mod:`edgeqat.catalog.datasources`)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any, Callable

from edgeqat.data.base import RecordSource
from edgeqat.catalog.datasources import SOURCES, DataSource, unknown
from edgeqat.errors import DataError


def _load(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(import_module(module), attr)


def open_source(source: str, path: str | Path | None, *, settings: Any = None, **options: Any) -> RecordSource:
    """The reader of ``source`` on ``path``, given the options its entry names: from ``settings``
    (the prepare section), overridden by keywords; an option left out takes the reader's default."""
    entry = SOURCES.get(source)
    if entry is None:
        raise DataError(unknown(source))
    make = _load(entry.reader)
    if not entry.needs_path:
        return make()
    if path is None:
        raise DataError(f"source {source!r} needs a path")
    given = {k: getattr(settings, k) for k in entry.options if hasattr(settings, k)} | options
    return make(path, **{k: v for k, v in given.items() if k in entry.options})


def detect_source(path: Path) -> DataSource | None:
    """The first source (in table order) whose layout ``path`` holds."""
    return next((s for s in SOURCES.values() if s.detect is not None and _load(s.detect)(path)), None)


def layouts() -> str:
    """The layouts the sources recognise, in a phrase ("A, B, or C")."""
    parts = [s.layout for s in SOURCES.values() if s.detect is not None]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + (", or " if len(parts) > 2 else " or ") + parts[-1]
