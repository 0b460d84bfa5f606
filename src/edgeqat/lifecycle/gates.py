"""The version gates: whether a registered model version may hold an alias.

They read the tags the register step put on the version (:mod:`edgeqat.lifecycle.version_tags`:
accuracy, drop vs FP32, size, each device's verdict), so a version is judged on what was
measured when it was built, with the thresholds of ``register`` in params.yaml at the time of
the promotion. A per-device model is gated on its own device (:func:`gate_config`). No MLflow
here: the registry is passed in.
"""

from __future__ import annotations

from typing import Any

from edgeqat.config import RegisterConfig
from edgeqat.errors import EdgeqatError
from edgeqat.lifecycle.managed import Model
from edgeqat.lifecycle.version_tags import VersionTags

CHAMPION = "champion"
HIGHER_IS_BETTER = {"accuracy": True, "size_bytes": False, "gzip_bytes": False, "latency_p50_ms": False}


class PromotionRefused(EdgeqatError):
    """A gate failed; the message lists every reason."""


def static_gates(tags: dict[str, str], cfg: RegisterConfig) -> list[str]:
    """Reasons the version fails on its own (empty = passes): accuracy, drop vs FP32, size, devices."""
    reasons = []
    t = VersionTags.from_tags(tags)
    acc, drop, size = t.number("accuracy"), t.number("accuracy_drop"), t.number("size_bytes")
    if acc is None:
        reasons.append("no accuracy tag: not registered by edgeqat (a version made with the MLflow UI's Register model "
                       "carries none of the measurements the gates read; register it with `edgeqat stage register`)")
    elif acc < cfg.min_accuracy:
        reasons.append(f"accuracy {acc:.4f} < register.min_accuracy {cfg.min_accuracy}")
    if drop is not None and drop > cfg.max_accuracy_drop:
        reasons.append(f"accuracy drop vs fp32 {drop:.4f} > register.max_accuracy_drop {cfg.max_accuracy_drop}")
    if cfg.max_size_bytes is not None and size is not None and size > cfg.max_size_bytes:
        reasons.append(f"size {int(size):,} bytes > register.max_size_bytes {cfg.max_size_bytes:,}")
    if cfg.required_devices is not None:
        required = list(cfg.required_devices)
    elif t.required_devices is not None:  # the validate stage's own list (validate.required_devices)
        required = list(t.required_devices)
    else:
        required = list(t.devices or ())
    for dev in required:
        verdict = t.verdict(dev)
        if verdict is None:
            reasons.append(f"required device {dev!r} was not validated")
        elif not verdict.passed:
            why = verdict.reasons or ""
            reasons.append(f"device {dev!r} failed" + (f": {why}" if why else ""))
    return reasons


def compare(tags: dict[str, str], champion: dict[str, Any] | None, cfg: RegisterConfig, strict: bool) -> list[str]:
    """Reasons the version does not beat (strict) or match the champion on ``promote_metric``."""
    if champion is None:
        return []
    m = cfg.promote_metric
    new, old = VersionTags.from_tags(tags).number(m), VersionTags.from_tags(champion["tags"]).number(m)
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
