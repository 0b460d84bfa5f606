"""A model a stage did not build, as a small marker in the model file's place.

DVC wants every declared output to exist after a stage runs, and a Kubeflow component must
hand back every output artifact; so a stage that skips a model (no requested variant needs
it, or the model cannot be built from what the user gave) writes this marker instead: a JSON
object naming the variants and the reason. Whoever loads the file gets that reason, not a
Keras error (:func:`edgeqat.models.io.load_model`).

Two kinds: ``not_requested`` (convert.variants did not ask for it: asking later re-runs the
stage, since it depends on convert.variants) and ``cannot_build`` (it can never be made from
this model: convert skips the variant and says why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

from edgeqat.errors import ModelError
from edgeqat.io import write_text

MARK = "edgeqat_not_built"
Kind = Literal["not_requested", "cannot_build"]
_MAX_BYTES = 4096  # a marker is a few hundred bytes; a real model is never this small and JSON


def write_absent(dest: str | Path, variants: Iterable[str], reason: str, kind: Kind) -> Path:
    doc = {MARK: {"variants": sorted(variants), "kind": kind, "reason": reason}}
    write_text(dest, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return Path(dest)


def absent(path: str | Path) -> Optional[dict[str, Any]]:
    """The marker's record (variants, kind, reason) when ``path`` is one, else None."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size > _MAX_BYTES:
        return None
    head = p.read_bytes()
    if MARK.encode() not in head:
        return None
    try:
        return json.loads(head)[MARK]
    except (ValueError, KeyError, TypeError):
        return None


def refuse_absent(path: str | Path) -> None:
    """A marker where a model is needed: the reason it was not built, as an error."""
    rec = absent(path)
    if rec is not None:
        raise ModelError(f"{path}: not built ({', '.join(rec['variants'])}): {rec['reason']}")


def not_built(stage: str, variants: Optional[Iterable[str]], fp32_model: str | Path) -> dict[str, tuple[Kind, str]]:
    """The variants of ``stage`` (their entries' ``needs`` in edgeqat.catalog.variants) it will not build this run, each with
    its kind and reason: every one when the FP32 model has no Keras layers, else the unrequested."""
    from edgeqat.models.exported import WHY, is_export, is_packed
    from edgeqat.catalog.variants import wanted

    mine, asked = wanted(stage, None), wanted(stage, variants)
    if is_packed(fp32_model) or is_export(fp32_model):
        return {v: ("cannot_build", WHY) for v in sorted(mine)}
    return {v: ("not_requested", "not in convert.variants") for v in sorted(mine - asked)}


def mark(dest: str | Path | None, names: Iterable[str], skipped: dict[str, tuple[Kind, str]]) -> None:
    """A marker at ``dest`` for the variants ``names`` this stage skipped (their kind and reason)."""
    names = sorted(names)
    if dest is not None and names:
        kind, reason = skipped[names[0]]
        write_absent(dest, names, reason, kind)


def skip_line(stage: str, skipped: dict[str, tuple[Kind, str]]) -> str:
    """One line: what the stage does not build, and why."""
    by_reason: dict[str, list[str]] = {}
    for v, (_, reason) in skipped.items():
        by_reason.setdefault(reason, []).append(v)
    return f"{stage}: not building " + "; ".join(f"{', '.join(vs)}: {r}" for r, vs in by_reason.items())
