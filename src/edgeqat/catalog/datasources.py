"""The data sources ``prepare.source`` and ``qat.finetune_source`` can name: one entry each.

An entry says everything that differs per source: its reader (a ``module:callable`` imported
only when the source is opened, as the stage table names its steps, so the digits never load
PIL and this table stays a foundation module that config.py validates names against), whether
it is built in or reads a path, which ``prepare`` options the reader takes, and how
``edgeqat data add`` recognises its layout (:mod:`edgeqat.data.sources` opens and detects).
Nothing else branches on a source's name: a new source is its reader module and one entry here
(or :func:`register`, from a plugin or a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgeqat.catalog import entries


@dataclass(frozen=True)
class DataSource:
    name: str
    #: "module:callable" taking (path, **options), or nothing for a built-in source; returns a
    #: RecordSource (edgeqat.data.base)
    reader: str
    #: what the built-in data is, for lineage and messages; None: the source reads a path
    builtin: Optional[str] = None
    #: the prepare.<key> options the reader takes as keywords
    options: tuple[str, ...] = ()
    #: "module:callable" (Path -> bool): does a path hold this source's layout (`edgeqat data add`)
    detect: Optional[str] = None
    #: that layout in a phrase, for the message when no source recognises a path
    layout: str = ""

    @property
    def needs_path(self) -> bool:
        return self.builtin is None


# In the order `edgeqat data add` tries them: IDX files may sit beside other folders, and a
# folder with class subfolders is a folder source before it is one .npz.
SOURCES: dict[str, DataSource] = {s.name: s for s in (
    DataSource("digits", "edgeqat.data.arrays:DigitsSource", builtin="sklearn.datasets.load_digits (built in)"),
    DataSource("idx", "edgeqat.data.idx:IdxSource", detect="edgeqat.data.idx:holds_idx",
               layout="MNIST-style IDX files"),
    DataSource("folder", "edgeqat.data.folder:FolderSource", options=("follow_symlinks", "alpha_background"),
               detect="edgeqat.data.folder:holds_class_folders", layout="a folder of class subfolders"),
    DataSource("npz", "edgeqat.data.arrays:NpzSource", detect="edgeqat.data.arrays:holds_one_npz", layout="an .npz"),
)}


def register(source: DataSource) -> DataSource:
    """Add (or replace) a source under its name."""
    SOURCES[source.name] = source
    return source


def unknown(name: str) -> str:
    return entries.unknown("data source", name, SOURCES)


def check_name(name: str) -> str:
    """``name`` if it is a known source (a ValueError naming the known ones if not)."""
    return entries.check_name("data source", name, SOURCES)


def needs_path(name: str) -> bool:
    return SOURCES[name].needs_path if name in SOURCES else True


def builtin_origin(name: str) -> Optional[str]:
    """What a built-in source's data is (None: the source reads a path)."""
    return SOURCES[name].builtin if name in SOURCES else None
