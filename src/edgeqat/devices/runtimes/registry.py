"""The Runtime a profile names, loaded from the table in :mod:`edgeqat.devices.runtimes.base`
(whose ``module:attribute`` entries are imported here, on first use)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from edgeqat.devices.runtimes.base import RUNTIMES, Runtime, known
from edgeqat.errors import ConfigError


def runtime_for(prof: Any) -> Runtime:
    """The runtime a profile names (a ConfigError naming the profile and the known ones if none)."""
    entry = RUNTIMES.get(prof.runtime)
    if entry is None:
        raise ConfigError(f"device profile {prof.name!r}: unknown runtime {prof.runtime!r} (known: {known()})")
    if isinstance(entry, str):
        if entry not in _LOADED:  # the table keeps the reference (DVC deps are read from it)
            module, _, attr = entry.partition(":")
            _LOADED[entry] = getattr(import_module(module), attr)
        entry = _LOADED[entry]
    return entry


_LOADED: dict[str, Runtime] = {}
