"""Recommendation benchmark: `edgeqat recommend` for every shipped profile, on pipeline outputs.

    python bench/recommend.py [--case NAME:DIR ...] [--max-minutes 15] [--out bench/recommend_results.md] [--reuse]

Each DIR is a pipeline workspace laid out as the stage table says (data/prepared, models/tflite,
models/fp32.keras, models/qat.h5), as bench/compression.py and bench/per_tensor.py leave them;
the default case is `default:bench/work/per_tensor/channel` (the default pipeline on the
default data: run bench/per_tensor.py first). The search ranks candidates on the validation
split and the chosen model is validated on its device on the test split: both accuracies are
written per device, with the chosen model, its verdict on the test split, the reason and the
search time, and the commit, dates, machine and 1-min load average. Measured devices (`host`)
write their calibration rows to the case's work folder, not to devices/measured.csv.
``--reuse`` rewrites the table from a case's last run (bench/work/recommend/NAME/) without
searching again. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import machine  # noqa: E402

from edgeqat.config import Params  # noqa: E402
from edgeqat.devices.profiles import available_profiles  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASE = "default:bench/work/per_tensor/channel"
COLUMNS = ("device", "chosen", "val accuracy (searched on)", "test accuracy (reported)", "test − val",
           "test vs FP32", "verdict on test", "stored bytes", "arena bytes", "latency ms (source)", "tried", "skipped",
           "reason")


def utc() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"


def row(dev: str, r: dict[str, Any]) -> str:
    c = next((c for c in r["candidates"] if c["candidate"] == r["chosen"]), None)
    t = r.get("test") or {}
    if c is None:
        cells = [dev, "none fits", *["–"] * 8]
    else:
        ms = c.get("latency_ms", c.get("latency_ms_estimate"))
        src = str(c.get("latency_source") or "estimate")
        proxy = f", {t['latency_proxy'].split(':')[0]}" if t.get("latency_proxy") else ""  # "ARM proxy"
        cells = [dev, r["chosen"], f"{c['accuracy']:.4f}", f"{t['accuracy']:.4f}", f"{t['accuracy'] - c['accuracy']:+.4f}",
                 f"{0.0 - t['accuracy_drop']:+.4f}", "PASS" if t["passed"] else "FAIL: " + "; ".join(t["reasons"]),
                 f"{c.get('stored_bytes') or c.get('size_bytes'):,}",
                 "–" if c.get("arena_bytes") is None else f"{c['arena_bytes']:,}",
                 "–" if ms is None else f"{ms:.3g} ({src}{proxy})"]
    return "| " + " | ".join([*cells, str(len(r["candidates"])), str(len(r["skipped"])), r["reason"]]) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", help=f"NAME:DIR (default {DEFAULT_CASE})")
    ap.add_argument("--max-minutes", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench/recommend_results.md")
    ap.add_argument("--reuse", action="store_true", help="the table from each case's last run, without searching")
    args = ap.parse_args()
    from edgeqat.io import read_json, write_json
    from edgeqat.workspace.stages import Workspace
    from edgeqat.steps.recommend import recommend

    os.environ.setdefault("EDGEQAT_LIVE_RUN", "0")
    p = Params()
    devices = list(available_profiles())
    body: list[str] = []
    for spec in args.case or [DEFAULT_CASE]:
        name, d = spec.split(":", 1)
        ws = Workspace(REPO / d)
        cfg = p.recommend.model_copy(update={"enabled": True, "devices": devices, "max_minutes": args.max_minutes})
        out = REPO / "bench/work/recommend" / name
        if not (args.reuse and (out / "bench.json").is_file()):
            calib = out / "measured.csv"
            calib.unlink(missing_ok=True)
            run = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True).stdout.strip(), "started": utc(), "load": [os.getloadavg()[0]]}
            t = time.monotonic()
            recommend(cfg, ws.path("prepared"), ws.path("tflite"), ws.path("fp32_model"), ws.path("qat_model"),
                      out / "report", out / "models", prune=p.prune, validate=p.validate, calibration=calib,
                      per_channel=p.convert.per_channel)
            run.update(wall_s=round(time.monotonic() - t), ended=utc(), load=[*run["load"], os.getloadavg()[0]])
            write_json(out / "bench.json", run)
        run = read_json(out / "bench.json")
        rep = read_json(out / "report" / "recommendation.json")
        body += [f"## {name} (`{d}`): search and test validation took {run['wall_s']} s", "",
                 f"Commit {run['commit']}; {run['started']} to {run['ended']}; 1-min load average {run['load'][0]:.2f} "
                 f"at start, {run['load'][1]:.2f} at end.", "",
                 "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|",
                 *(row(dev, r) for dev, r in rep["devices"].items()),
                 "", f"Full tables: `bench/work/recommend/{name}/report/recommendation.md` (not committed).", ""]
    head = ["# edgeqat benchmark: per-device recommendation", "",
            f"- machine: {machine()} (2 cores shared with other jobs); each case's commit, dates and load below",
            f"- recommend.max_minutes: {args.max_minutes:g} per case; budget_accuracy_drop {p.recommend.budget_accuracy_drop} "
            f"(shipped); every shipped profile ({len(devices)}); validate settings: the shipped ones (QEMU where "
            "`make arm64` ran)",
            f"- candidates: the pipeline's variants, PQAT at {', '.join(f'{s:.0%}' for s in p.recommend.sparsities)}, "
            f"channel pruning at {', '.join(f'{f:.0%}' for f in p.recommend.channel_fractions)}, QAT with uint8 I/O",
            "- splits: every candidate is measured, budgeted and ranked on the **validation** split ('val accuracy'); "
            "the chosen file is then validated on its device on the **test** split, which the search never read "
            "('test accuracy', 'verdict on test'). 'test vs FP32': the chosen model's test accuracy minus the FP32 "
            "model's.", ""]
    args.out.write_text("\n".join(head + body) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
