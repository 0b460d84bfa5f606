"""Recommendation benchmark: `edgeqat recommend` for every shipped profile, on pipeline outputs.

    python bench/recommend.py --case NAME:DIR [--case NAME:DIR ...] [--max-minutes 30]
                              [--out bench/recommend_results.md]

Each DIR holds a pipeline's outputs laid out as bench/compression.py writes them
(prepared/, tflite/, fp32.keras, qat.h5) -- e.g. `default:bench/work/compression/a` and
`idx-mobilenetv2:bench/work/compression/b`. Writes the chosen model, the reason and the
search time per device and case. Not part of the timed test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import machine  # noqa: E402

from edgeqat.config import Params  # noqa: E402
from edgeqat.devices.profiles import available_profiles  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", required=True, help="NAME:DIR")
    ap.add_argument("--max-minutes", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench/recommend_results.md")
    args = ap.parse_args()
    from edgeqat.io import read_json
    from edgeqat.steps.recommend import recommend

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    lines = ["# edgeqat benchmark: per-device recommendation", "",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", f"- machine: {machine()}",
             f"- commit: {commit}", f"- recommend.max_minutes: {args.max_minutes:g} per case; every shipped profile",
             "- candidates: the pipeline's variants, PQAT at 75%, channel pruning at 50% and 70%, QAT with uint8 I/O", ""]
    devices = list(available_profiles())
    for spec in args.case:
        name, d = spec.split(":", 1)
        d = Path(d)
        p = Params()
        cfg = p.recommend.model_copy(update={"enabled": True, "devices": devices, "max_minutes": args.max_minutes})
        out = REPO / "bench/work/recommend" / name
        t = time.monotonic()
        recommend(cfg, d / "prepared", d / "tflite", d / "fp32.keras", d / "qat.h5", out / "report",
                  out / "models", prune=p.prune)
        wall = time.monotonic() - t
        rep = read_json(out / "report" / "recommendation.json")
        lines += [f"## {name} (`{d}`): search took {wall:.0f} s", "",
                  "| device | chosen | accuracy | size bytes | arena bytes | est. latency ms | candidates tried | skipped | reason |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for dev, r in rep["devices"].items():
            row = next((c for c in r["candidates"] if c["candidate"] == r["chosen"]), None)
            f = (lambda k, fmt: "–" if row is None or row.get(k) is None else format(row[k], fmt))  # noqa: E731
            lines.append(f"| {dev} | {r['chosen'] or 'none fits'} | {f('accuracy', '.4f')} | {f('size_bytes', ',')} | "
                         f"{f('arena_bytes', ',')} | {f('latency_ms_estimate', '.3g')} | {len(r['candidates'])} | "
                         f"{len(r['skipped'])} | {r['reason']} |")
        lines += ["", f"Full tables: `bench/work/recommend/{name}/report/recommendation.md` (not committed).", ""]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
