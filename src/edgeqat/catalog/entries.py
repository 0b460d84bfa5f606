"""How a catalog refuses a name it does not hold: one message for variants and data sources,
naming every known entry, so a typo in params.yaml is answered with the choices."""

from __future__ import annotations

from typing import Iterable, Mapping


def unknown(kind: str, name: str, known: Iterable[str]) -> str:
    return f"unknown {kind} {name!r} (known: {', '.join(known)})"


def check_name(kind: str, name: str, known: Mapping[str, object]) -> str:
    """``name`` if ``known`` holds it (a ValueError naming the known ones if not)."""
    if name not in known:
        raise ValueError(unknown(kind, name, known))
    return name
