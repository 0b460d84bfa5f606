"""Promotion: alias moves with their history.

No MLflow here: everything goes through :class:`edgeqat.lifecycle.registry.Registry`. A move
is made only when the version passes the gates (:mod:`edgeqat.lifecycle.gates`), or is forced
with a reason; export is :mod:`edgeqat.lifecycle.export`.

History actions that *move* an alias: ``register`` (challenger), ``auto``, ``promote``,
``force``, ``ui`` (a move made outside edgeqat, seen by the webhook receiver),
``rollback``, ``revert`` (the receiver undoing a move that failed a gate), ``removed``
(the alias deleted outside edgeqat); a move with ``version`` null removes the alias. Other
actions are records only: ``refused``, ``rejected``, ``deployed``, and ``abandoned`` (a
recorded move whose alias change MLflow then refused; it cancels that record).

Every function takes the registered model's name: ``register.model_name`` or a
per-device ``<model_name>-<device>`` (:mod:`edgeqat.lifecycle.managed`); ``cfg`` supplies the
thresholds, and a per-device model is gated on its own device (:func:`~edgeqat.lifecycle.gates.gate_config`).
"""

from __future__ import annotations

import getpass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeqat.config import RegisterConfig
from edgeqat.errors import EdgeqatError
from edgeqat.io import read_json, write_json
from edgeqat.lifecycle.gates import CHAMPION, PromotionRefused, gate_reasons
from edgeqat.lifecycle.managed import resolve

CHALLENGER = "challenger"
MOVES = {"register", "auto", "promote", "force", "ui", "rollback", "revert", "removed"}
REJECTED_MARK = "**edgeqat rejected this version as"
MAX_DESCRIPTION = 5000  # MLflow's column width (enforced by PostgreSQL and MySQL, not SQLite)


def whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def rejection_note(description: str, alias: str, why: str, at: datetime | None = None) -> str:
    """``description`` under a first line saying edgeqat rejected the version, when and why
    (what the UI shows where the user clicked); an earlier such line is replaced."""
    at = (at or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M:%S UTC")
    if description.startswith(REJECTED_MARK):
        description = description.split("\n", 1)[1].lstrip("\n") if "\n" in description else ""
    line = f"{REJECTED_MARK} {alias}** on {at}: {' '.join(why.split())}"[:1000]  # one line, whatever the reasons hold
    text = f"{line}\n\n{description}" if description else line
    cut = "\n\n(truncated by edgeqat)"
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - len(cut)] + cut


# --- history --------------------------------------------------------------------------


def moves(history: list[dict[str, Any]], alias: str) -> list[dict[str, Any]]:
    undone = {h.get("undoes") for h in history if h.get("action") == "abandoned"}
    return [h for h in history if h.get("alias") == alias and h.get("action") in MOVES and h.get("key") not in undone]


def record_move(reg: Any, name: str, alias: str, version: str | None, event: dict[str, Any]) -> dict[str, Any]:
    """Record the move, then make it (so a receiver seeing the alias event finds the record);
    ``version`` None removes the alias. If MLflow refuses the change, the record is marked abandoned."""
    entry = reg.record(name, {**event, "alias": alias, "version": version})
    try:
        if version is None:
            reg.delete_alias(name, alias)
        else:
            reg.set_alias(name, alias, version)
    except Exception:
        reg.record(name, {"action": "abandoned", "alias": alias, "version": version, "undoes": entry["key"],
                          "by": event.get("by"), "reason": "setting the alias failed"})
        raise
    return entry


def champion_stack(history: list[dict[str, Any]], alias: str = CHAMPION) -> list[str]:
    """The versions that held ``alias``, oldest first; a rollback pops the one it left."""
    stack: list[str] = []
    for h in moves(history, alias):
        if h.get("version") is None:  # a removal: a rollback afterwards restores the last holder
            continue
        v = str(h["version"])
        if h["action"] == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != v:
                stack.append(v)
        elif not stack or stack[-1] != v:
            stack.append(v)
    return stack


def last_recorded(history: list[dict[str, Any]], alias: str) -> str | None:
    """Where the last recorded move left ``alias`` (None: never set, or removed)."""
    m = moves(history, alias)
    return str(m[-1]["version"]) if m and m[-1].get("version") is not None else None


HISTORY_COLUMNS = ("at", "alias", "action", "version", "previous", "by", "reason")


def history_rows(history: list[dict[str, Any]], alias: str | None = None) -> list[list[str]]:
    """One row of HISTORY_COLUMNS per recorded move of ``alias`` (every alias: None)."""
    return [[str(h.get("at", "?")), h.get("alias", "-"), h.get("action", "?"), h.get("version") or "-",
             h.get("previous") or "-", str(h.get("by", "?")), h.get("reason") or "; ".join(h.get("reasons", [])) or "-"]
            for h in history if alias is None or h.get("alias") == alias]


# --- moves ----------------------------------------------------------------------------


def promote(reg: Any, cfg: RegisterConfig, name: str, version: str, alias: str = CHAMPION, *, force: bool = False,
            reason: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Move ``alias`` of model ``name`` to ``version`` if every gate passes (or ``force`` with a reason)."""
    version, by = str(version), by or whoami()
    if force and not (reason and reason.strip()):
        raise EdgeqatError("--force needs --reason \"...\": a forced promotion records who and why")
    model = resolve(reg, cfg.model_name, name)
    if version not in reg.versions(name):
        raise EdgeqatError(f"{name!r} has no version {version} (has: {', '.join(reg.versions(name)) or 'none'})")
    current = reg.alias_version(name, alias)
    if current == version:
        return {"version": version, "alias": alias, "previous": current, "action": "unchanged", "reasons": []}
    reasons = gate_reasons(reg, cfg, model, version, alias, current)
    if reasons and not force:
        reg.record(name, {"action": "refused", "alias": alias, "version": version, "previous": current,
                          "by": by, "reasons": reasons, "reason": reason})
        raise PromotionRefused(f"{name} version {version} cannot become {alias!r}:\n  " + "\n  ".join(reasons)
                               + "\n(use --force --reason \"...\" to override; the override is recorded)")
    action = "force" if reasons else "promote"
    # Recorded before the alias moves, so the webhook receiver recognises the move as gated.
    record_move(reg, name, alias, version, {"action": action, "previous": current, "by": by, "reason": reason, "reasons": reasons})
    return {"version": version, "alias": alias, "previous": current, "action": action, "reasons": reasons}


def rollback(reg: Any, name: str, alias: str = CHAMPION, *, reason: str | None = None,
             by: str | None = None) -> dict[str, Any]:
    """Move ``alias`` of model ``name`` back to the version that held it before the current one."""
    current = reg.alias_version(name, alias)
    stack = champion_stack(reg.history(name), alias)
    if current is not None and stack and stack[-1] == current:
        stack = stack[:-1]
    if not stack:
        raise EdgeqatError(f"{name!r}: no earlier {alias!r} recorded to roll back to (see `edgeqat history`)")
    target = stack[-1]
    record_move(reg, name, alias, target, {"action": "rollback", "previous": current, "by": by or whoami(),
                                      "reason": reason or "rollback"})
    return {"version": target, "previous": current, "alias": alias}


def mark_unset(out: str | Path, name: str, alias: str, by: str) -> Path:
    """Say in ``out/export.json`` that ``alias`` is no longer set; the model files stay as they are."""
    path = Path(out) / "export.json"
    doc = read_json(path) if path.is_file() else {"model_name": name, "version": None, "alias": alias}
    doc.update({f"{alias}_set": False, f"{alias}_removed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                f"{alias}_removed_by": by})
    return write_json(path, doc)
