"""Search the candidates for one device: cheapest first, rule out what cannot fit before making
it, stay inside a time budget, pick the most accurate candidate that meets every budget.

Order: candidates already on disk, then conversions, then fine-tunes (pruning), so the
expensive ones run only when needed and within ``max_minutes``. Before a candidate is made
it is skipped, with the reason, when
- the device runs integer ops only and the candidate is not integer-only;
- even its optimistic size bound exceeds the device's flash (flatbuffer devices only: the
  bounds are flatbuffer bytes, and Vela's encoding for Ethos-U can be smaller);
- making it would not finish inside the time left (its cost forecast from the last
  fine-tune of this search; the first fine-tune starts whenever any time is left).
The choice: passes every budget of the device (ops, flash, SRAM arena, RAM, latency) and
loses at most ``budget_accuracy_drop`` vs the FP32 Keras model; an integer-only model
whenever one passes; the most accurate, ties broken by size, then latency. On a device that
is really there (``connect:``) every candidate's latency is measured on it: the budget is
checked against that, and ties are broken by measured latency before size. Size is the device's own measure (:mod:`edgeqat.devices.storage`): the
flatbuffer on LiteRT/TFLM, where pruned and clustered models store every weight as plain
QAT does, and Vela's encoded flash on Ethos-U, where zeros and clusters shrink.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgeqat.devices.profiles import DeviceProfile
from edgeqat.devices.storage import stores_flatbuffer
from edgeqat.devices.validate import EvalData, validate_on_device, verdict_line
from edgeqat.io import log
from edgeqat.progress import bar
from edgeqat.recommend.candidates import Candidate

COST_ORDER = {"ready": 0, "convert": 1, "train": 2}


@dataclass
class Clock:
    """One time budget shared by every device of a run; fine-tunes are made once and reused."""

    max_seconds: float
    start: float = field(default_factory=time.monotonic)
    train_seconds: Optional[float] = None  # the last fine-tune's cost, to forecast the next

    def left(self) -> float:
        return self.max_seconds - (time.monotonic() - self.start)


def _row(c: Candidate, v: dict[str, Any]) -> dict[str, Any]:
    from edgeqat.quantization.inspect import weight_sparsity

    return {"candidate": c.name, "strategy": c.description, "verdict": "pass" if v["passed"] else "fail",
            "accuracy": v.get("accuracy"), "accuracy_drop": v.get("accuracy_drop"), "size_bytes": v["model_bytes"],
            "stored_bytes": v.get("stored_bytes"), "size_measure": v.get("stored_measure", "flatbuffer"),
            "weight_sparsity": round(weight_sparsity(c.path)["sparsity"], 4),
            "arena_bytes": v.get("arena_bytes"), "latency_ms_estimate": v.get("latency_ms_estimate"),
            "latency_ms": v.get("latency_ms"), "latency_source": v.get("latency_source"),
            "integer_only": not v["workload"]["float_ops"], "reasons": v["reasons"], "misses": v.get("misses", {}),
            "hard_failure": v.get("hard_failure", False)}


def _precheck(c: Candidate, prof: DeviceProfile, clock: Clock) -> Optional[str]:
    if prof.int8_only and c.integer_only is False:
        return f"{prof.name} runs integer ops only and {c.name} keeps float ops"
    lo = c.size_bounds[0]
    if stores_flatbuffer(prof) and prof.flash_bytes is not None and lo is not None and lo > prof.flash_bytes and c.path is None:
        return f"even at best {lo:,} bytes > flash {prof.flash_bytes:,} bytes"
    if c.path is None and c.cost == "train" and clock.train_seconds is not None and clock.train_seconds > clock.left():
        return f"needs ~{clock.train_seconds:.0f} s of fine-tuning, {max(clock.left(), 0):.0f} s left of recommend.max_minutes"
    if c.path is None and clock.left() <= 0:
        return "recommend.max_minutes used up"
    return None


def stored(row: dict[str, Any]) -> int:
    """The row's size by its device's measure (the flatbuffer when the device gave none)."""
    return row["stored_bytes"] if row.get("stored_bytes") is not None else row["size_bytes"]


def _speed(row: dict[str, Any]) -> float:
    ms = row.get("latency_ms", row.get("latency_ms_estimate"))
    return ms if ms is not None else float("inf")


def rank_key(measured: bool) -> Callable[[dict[str, Any]], tuple]:
    """The order of passing candidates, best first: integer-only first (what edgeqat is for:
    smaller and faster on every target; a float model is chosen only when no integer one
    passes), then most accurate, then smaller, then faster; on a ``measured`` device (one with
    ``connect:``) faster before smaller, as its latency is a fact there, not an estimate."""
    def key(r: dict[str, Any]) -> tuple:
        size_speed = (_speed(r), stored(r)) if measured else (stored(r), _speed(r))
        return (not r["integer_only"], -(r["accuracy"] or 0), *size_speed)
    return key


def _budget_text(prof: DeviceProfile, row: dict[str, Any]) -> str:
    parts = []
    if prof.flash_bytes:
        what = " Vela-encoded" if str(row.get("size_measure")).startswith("vela") else ""
        parts.append(f"{stored(row) / 1024:.0f} KiB{what} in {prof.flash_bytes / 1024:.0f} KiB flash")
    if prof.sram_bytes and row.get("arena_bytes"):
        parts.append(f"a {row['arena_bytes'] / 1024:.0f} KiB arena in {prof.sram_bytes / 1024:.0f} KiB SRAM")
    ms = row.get("latency_ms", row.get("latency_ms_estimate"))
    if prof.latency_budget_ms and ms is not None:
        how = "measured" if row.get("latency_source") == "measured" else "estimated"
        parts.append(f"~{ms:.2g} ms {how} of a {prof.latency_budget_ms:g} ms budget")
    return ", ".join(parts) or "every budget"


def nearest_miss(rows: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The failing candidate closest to passing: only budget misses (no op or run failure),
    ranked by its worst relative excess over a budget."""
    best = None
    for r in rows:
        if r["verdict"] == "pass" or r["hard_failure"] or not r["misses"]:
            continue
        worst = max(((m["needed"] - m["available"]) / m["available"] if m["available"] else float("inf"), k)
                    for k, m in r["misses"].items())
        if best is None or worst[0] < best["excess"]:
            m = r["misses"][worst[1]]
            best = {"candidate": r["candidate"], "budget": worst[1], "excess": worst[0],
                    "needed": m["needed"], "available": m["available"]}
    return best


def recommend_for_device(prof: DeviceProfile, candidates: list[Candidate], data: EvalData, *,
                         budget_accuracy_drop: float, clock: Clock, latency_runs: int = 20,
                         cache: Optional[dict] = None, calibration: Optional[Path] = None,
                         split: str = "validation") -> dict[str, Any]:
    """``data``: the split every candidate is measured, budgeted and ranked on (``split`` names
    it in the reason); the test split is for reporting the choice, never for making it.
    ``calibration``: the project's measured-rows file (estimates learn from it, measurements add to it)."""
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    with bar(f"recommend {prof.name}", total=len(candidates)) as progress:
        for c in sorted(candidates, key=lambda c: COST_ORDER[c.cost]):
            progress.start(c.name)
            why = _precheck(c, prof, clock)
            if why is not None:
                progress.done(f"skip {c.name}: {why}")
                skipped.append({"candidate": c.name, "why": why})
                continue
            if c.path is None:
                log(f"recommend: {prof.name}: making {c.name} ({c.description})")
                t = time.monotonic()
                c.materialize()
                if c.cost == "train":
                    clock.train_seconds = time.monotonic() - t
            size = c.path.stat().st_size
            # known to fail without running it (a flatbuffer device stores the file as it is)
            if stores_flatbuffer(prof) and prof.flash_bytes is not None and size > prof.flash_bytes:
                reason = f"model {size:,} bytes > flash {prof.flash_bytes:,} bytes"
                progress.done(f"{c.name} fails without running: {reason}")
                rows.append({"candidate": c.name, "strategy": c.description, "verdict": "fail", "accuracy": None,
                             "accuracy_drop": None, "size_bytes": size, "stored_bytes": size,
                             "size_measure": "flatbuffer", "arena_bytes": None, "latency_ms_estimate": None,
                             "integer_only": bool(c.integer_only), "reasons": [reason], "hard_failure": False,
                             "misses": {"flash": {"needed": size, "available": prof.flash_bytes}}})
                continue
            key = (c.name, prof.name)
            if cache is not None and key in cache:
                v = cache[key]
            else:
                v = validate_on_device(c.path, prof, data, latency_runs=latency_runs,
                                       max_accuracy_drop=budget_accuracy_drop, emulate=False, calibration=calibration)
                if cache is not None:
                    cache[key] = v
            row = _row(c, v)
            if v.get("reference_accuracy") is not None and v.get("accuracy") is not None:
                row["accuracy_drop"] = v["reference_accuracy"] - v["accuracy"]
            rows.append(row)
            progress.done(f"{c.name}: {verdict_line(v)}")
    passing = sorted((r for r in rows if r["verdict"] == "pass"), key=rank_key(measured=prof.connect is not None))
    out: dict[str, Any] = {"device": prof.name, "title": prof.title, "candidates": rows, "skipped": skipped,
                           "seconds": round(time.monotonic() - t0, 1)}
    if passing:
        best = passing[0]
        out["chosen"] = best["candidate"]
        drop = best.get("accuracy_drop")
        reason = f"{best['strategy']}: fits {_budget_text(prof, best)}"
        if drop is not None:
            reason += f" with {drop * 100:.1f} pt accuracy loss on the {split} split" if drop >= 0 else \
                f" at {-drop * 100:.1f} pt above the FP32 model's accuracy on the {split} split"
        # Say why the baseline (plain QAT) lost when it did, else the most accurate option that failed.
        qat = next((r for r in rows if r["candidate"] == "qat_int8" and r["verdict"] == "fail"), None)
        better = [r for r in rows if r["verdict"] == "fail" and (r["accuracy"] or 0) >= (best["accuracy"] or 0)]
        lost = qat or (better[0] if better else None)
        if lost is not None:
            reason += f"; {'plain QAT int8' if lost is qat else lost['strategy']} did not ({lost['reasons'][0]})"
        out["reason"] = reason + "."
    else:
        out["chosen"] = None
        miss = nearest_miss(rows)
        out["nearest_miss"] = miss
        if miss is not None:
            out["reason"] = (f"no model fits {prof.name}: the closest, {miss['candidate']}, misses {miss['budget']} by "
                             f"{miss['excess']:.0%} ({miss['needed']:,.4g} needed, {miss['available']:,.4g} available).")
        else:
            out["reason"] = f"no model fits {prof.name}: every candidate tried failed on ops or could not run" + \
                (f" ({rows[0]['reasons'][0]})" if rows and rows[0]["reasons"] else "") + "."
    return out
