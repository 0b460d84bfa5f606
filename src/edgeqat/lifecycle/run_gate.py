"""The run gate: whether the pipeline's model may be registered at all.

It may not when a required device failed at validate, or when the registered variant is no
better than always answering the test split's most common class (a model that learned
nothing). validate logs the first, track marks the run failed with both, register refuses
both (:class:`~edgeqat.errors.GateFailed`), and the reports say so. The version gates, which
judge a registered version by its tags, are :mod:`edgeqat.lifecycle.gates`.
"""

from __future__ import annotations

from typing import Any

from edgeqat.reporting.tables import ordered_variants


def gate_failure(summary: dict[str, Any]) -> str:
    """Why the validated model fails its required devices, naming each budget, and what to try."""
    devices = summary.get("devices") or {}
    failed = [d for d in summary.get("required_devices", []) if not (devices.get(d) or {}).get("passed")]
    if not failed:
        return ""
    model = summary.get("validated_model", "the model")
    parts = [f"{d}: {'; '.join((devices.get(d) or {}).get('reasons') or ['not validated'])}" for d in failed]
    hint = " ".join(f"`edgeqat recommend --device {d}`" for d in failed)
    return (f"{model} failed required device(s) {', '.join(failed)} ({' | '.join(parts)}); the run is tracked, nothing "
            f"is registered. To find a model that fits: {hint}; or drop the device from validate.required_devices")


def chance_failure(summary: dict[str, Any], variant: str, margin: float) -> str:
    """Why ``variant`` is no better than always answering the test split's most common class
    ('' when it beats that rate by ``margin``, or when the summary predates the record)."""
    rate, row = summary.get("majority_rate"), (summary.get("variants") or {}).get(variant) or {}
    if margin <= 0 or rate is None or row.get("accuracy") is None:
        return ""
    if row["accuracy"] >= rate + margin - 1e-9:
        return ""
    return (f"{variant} accuracy {row['accuracy']:.4f} is not clearly above chance: always answering the test split's most "
            f"common class ({summary.get('majority_class', '?')!r}) scores {rate:.4f}, and register.chance_margin asks "
            f"for {margin:g} more ({rate + margin:.4f})")


def chance_warning(summary: dict[str, Any], variant: str, margin: float) -> str:
    """One warning line for the report and the console: the registered variant at chance level,
    and which other variants are (every variant is listed when the FP32 model learned nothing)."""
    main = chance_failure(summary, variant, margin)
    if not main:
        return ""
    others = [n for n, _ in ordered_variants(summary) if n != variant and chance_failure(summary, n, margin)]
    return ("WARNING: chance level: " + main + "; it is not registered"
            + (f". Also at chance level: {', '.join(others)}" if others else ""))


def registry_gate(summary: dict[str, Any], variant: str, margin: float) -> str:
    """Every reason the pipeline's model may not be registered ('' = none): a required device
    failed at validate, or its accuracy is at chance level."""
    reasons = [gate_failure(summary) if summary.get("validation_passed") is False else "",
               chance_failure(summary, variant, margin)]
    return " | ".join(r for r in reasons if r)
