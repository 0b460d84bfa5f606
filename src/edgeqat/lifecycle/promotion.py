"""Promotion: the gates a model version must pass, alias moves with their history, export.

No MLflow here: everything goes through :class:`edgeqat.lifecycle.registry.Registry`. The gates
read the tags the register step put on a version (accuracy, drop vs FP32, size, each
device's verdict), so a version is judged on what was measured when it was built, with
the thresholds of ``register`` in params.yaml at the time of the promotion.

History actions that *move* an alias: ``register`` (challenger), ``auto``, ``promote``,
``force``, ``ui`` (a move made outside edgeqat, seen by the webhook receiver),
``rollback``, ``revert`` (the receiver undoing a move that failed a gate), ``removed``
(the alias deleted outside edgeqat); a move with ``version`` null removes the alias. Other
actions are records only: ``refused``, ``rejected``, ``deployed``, and ``abandoned`` (a
recorded move whose alias change MLflow then refused; it cancels that record).

Every function takes the registered model's name: ``register.model_name`` or a
per-device ``<model_name>-<device>`` (:mod:`edgeqat.lifecycle.managed`); ``cfg`` supplies the
thresholds, and a per-device model is gated on its own device (:func:`gate_config`).
"""

from __future__ import annotations

import getpass
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeqat.config import RegisterConfig
from edgeqat.errors import EdgeqatError
from edgeqat.io import CARD_NAME, contained, read_json, redact, sha256_file, write_bytes, write_json
from edgeqat.lifecycle.managed import Model, resolve

CHAMPION = "champion"
CHALLENGER = "challenger"
MOVES = {"register", "auto", "promote", "force", "ui", "rollback", "revert", "removed"}
REJECTED_MARK = "**edgeqat rejected this version as"
MAX_DESCRIPTION = 5000  # MLflow's column width (enforced by PostgreSQL and MySQL, not SQLite)
HIGHER_IS_BETTER = {"accuracy": True, "size_bytes": False, "gzip_bytes": False, "latency_p50_ms": False}


class PromotionRefused(EdgeqatError):
    """A gate failed; the message lists every reason."""


def whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- gates ----------------------------------------------------------------------------


def _num(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None


def static_gates(tags: dict[str, str], cfg: RegisterConfig) -> list[str]:
    """Reasons the version fails on its own (empty = passes): accuracy, drop vs FP32, size, devices."""
    reasons = []
    acc, drop, size = _num(tags, "accuracy"), _num(tags, "accuracy_drop"), _num(tags, "size_bytes")
    if acc is None:
        reasons.append("no accuracy tag: not registered by edgeqat (a version made with the MLflow UI's Register model "
                       "carries none of the measurements the gates read; register it with `edgeqat stage register`)")
    elif acc < cfg.min_accuracy:
        reasons.append(f"accuracy {acc:.4f} < register.min_accuracy {cfg.min_accuracy}")
    if drop is not None and drop > cfg.max_accuracy_drop:
        reasons.append(f"accuracy drop vs fp32 {drop:.4f} > register.max_accuracy_drop {cfg.max_accuracy_drop}")
    if cfg.max_size_bytes is not None and size is not None and size > cfg.max_size_bytes:
        reasons.append(f"size {int(size):,} bytes > register.max_size_bytes {cfg.max_size_bytes:,}")
    validated = [d for d in tags.get("devices", "").split(",") if d]
    if cfg.required_devices is not None:
        required = cfg.required_devices
    elif "required_devices" in tags:  # the validate stage's own list (validate.required_devices)
        required = [d for d in tags["required_devices"].split(",") if d]
    else:
        required = validated
    for dev in required:
        passed = tags.get(f"device.{dev}.passed")
        if passed is None:
            reasons.append(f"required device {dev!r} was not validated")
        elif passed != "true":
            why = tags.get(f"device.{dev}.reasons", "")
            reasons.append(f"device {dev!r} failed" + (f": {why}" if why else ""))
    return reasons


def compare(tags: dict[str, str], champion: dict[str, Any] | None, cfg: RegisterConfig, strict: bool) -> list[str]:
    """Reasons the version does not beat (strict) or match the champion on ``promote_metric``."""
    if champion is None:
        return []
    m = cfg.promote_metric
    new, old = _num(tags, m), _num(champion["tags"], m)
    if new is None or old is None:
        return [] if old is None else [f"no {m} tag to compare with champion version {champion['version']}"]
    higher = HIGHER_IS_BETTER[m]
    worse = (new < old if higher else new > old) if not strict else (new <= old if higher else new >= old)
    if worse:
        word = ("does not beat" if strict else "is worse than")
        return [f"{m} {new:g} {word} champion version {champion['version']}'s {old:g}"]
    return []


def gate_config(cfg: RegisterConfig, device: str | None) -> RegisterConfig:
    """The thresholds for one model: a per-device model's only required device is its own
    (not ``register.required_devices`` or ``validate.required_devices`` of the main model)."""
    return cfg if device is None else cfg.model_copy(update={"required_devices": [device]})


def gate_reasons(reg: Any, cfg: RegisterConfig, model: Model, version: str, alias: str, against: str | None,
                 strict: bool = False) -> list[str]:
    """Why ``model`` version ``version`` may not hold ``alias`` (empty = it may)."""
    cfg = gate_config(cfg, model.device)
    v = reg.version(model.name, version)
    reasons = static_gates(v["tags"], cfg)
    if alias == CHAMPION and against and against != str(version):
        reasons += compare(v["tags"], reg.version(model.name, against), cfg, strict)
    return reasons


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


# --- export ---------------------------------------------------------------------------


def export(reg: Any, name: str, out: str | Path, *, alias: str | None = CHAMPION,
           version: str | None = None, device: str | None = None,
           profiles_dir: str | Path | None = None) -> dict[str, Any]:
    """Download model ``name``'s .tflite and its single-variant model card; verify the sha256 registered.

    With ``device`` naming an Ethos-U profile, what ships is Vela's compiled file for that
    NPU (``<stem>_vela.tflite``), and the card names it, the Vela version and configuration.
    ``export.json`` says which version it is and, with ``alias``, ``<alias>_set: true``."""
    prof = None
    if device is not None:
        from edgeqat.devices.profiles import resolve_profiles

        prof = resolve_profiles([device], extra_dir=profiles_dir)[0]
    out = Path(out)
    if version is None:
        version = reg.alias_version(name, alias)
        if version is None:
            raise EdgeqatError(f"{name!r} has no alias {alias!r}: promote a version first (edgeqat promote VERSION)")
    v = reg.version(name, version)
    expected = v["tags"].get("sha256")
    if not expected:
        raise EdgeqatError(f"{name} version {version}: no sha256 tag (not registered by edgeqat)")
    with tempfile.TemporaryDirectory() as tmp:
        art_dir = reg.download(name, version, Path(tmp), "artifacts")
        cards = list(art_dir.glob(f"**/{CARD_NAME}"))
        if not cards:
            raise EdgeqatError(f"{name} version {version}: no {CARD_NAME} in its artifacts")
        card = read_json(cards[0])
        (variant, entry), = card["variants"].items()
        source = f"{name} version {version}: {CARD_NAME} variants.{variant}.file"  # the registry's word, not ours
        if not str(entry.get("file", "")).endswith(".tflite"):  # nor overwrite the card, export.json, receiver state
            raise EdgeqatError(f"{source}: {entry.get('file')!r} is not a .tflite file name; refused, nothing written")
        tflite = contained(cards[0].parent, entry["file"], source)
        contained(out, entry["file"], source)  # where it would be shipped: checked before anything is read
        got = sha256_file(tflite)
        if got != expected or entry.get("sha256") != expected:
            raise EdgeqatError(f"{name} version {version}: {entry['file']} sha256 {got} does not match the registered "
                               f"{expected} (card says {entry.get('sha256')}); nothing exported")
        shipped, blob, extra = entry["file"], tflite.read_bytes(), {}
        artifact = None
        if prof is not None:
            from edgeqat.devices.runtimes.registry import runtime_for

            artifact = runtime_for(prof).export(tflite, prof)
        if artifact is not None:  # the runtime ships its own file (Vela's compile for an NPU)
            shipped, blob, extra = artifact
            card["variants"][variant]["deployment"] = {**extra, "source_file": entry["file"], "source_sha256": got}
        # File by file (each atomic), never replacing the folder: it may hold other things.
        write_bytes(contained(out, shipped, source), blob)
        write_json(out / CARD_NAME, card)
        write_json(out / "export.json", {"model_name": name, "version": str(version), "alias": alias,
                                         "variant": variant, "file": shipped, "sha256": extra.get("sha256", got),
                                         "registered_sha256": got, "device": device, "tracking_uri": redact(reg.uri),
                                         **({f"{alias}_set": True} if alias else {})})
    return {"version": str(version), "file": str(out / shipped), "sha256": extra.get("sha256", got), "variant": variant}


def mark_unset(out: str | Path, name: str, alias: str, by: str) -> Path:
    """Say in ``out/export.json`` that ``alias`` is no longer set; the model files stay as they are."""
    path = Path(out) / "export.json"
    doc = read_json(path) if path.is_file() else {"model_name": name, "version": None, "alias": alias}
    doc.update({f"{alias}_set": False, f"{alias}_removed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                f"{alias}_removed_by": by})
    return write_json(path, doc)
