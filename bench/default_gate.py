"""Benchmark: does the default model pass the default device gate on the README's data shapes?

    python bench/default_gate.py [--out bench/default_gate_results.md]

For each input shape a user meets first (the built-in digits at 16x16x1, a 28x28 grayscale IDX
set, a 32x32 and a 64x64 RGB folder, and 96x96, the largest size `edgeqat data add` picks), builds the default model (params.yaml's train.model and
train.alpha), converts it to int8 (ptq_int8: the same graph and arithmetic as qat_int8), and
validates it on every shipped device profile with the estimators `validate` uses (no data:
ops, flash, arena and estimated latency). Writes the matrix and which devices pass every
shape: the candidates for ``validate.required_devices``. Weights are untrained: latency,
memory and ops do not depend on them.

Then how fast the fail-fast check stops a run that cannot fit (unless ``--no-preflight``): in a
scratch git + DVC repository with this project's pipeline (the one
tests/integration/test_preflight_dvc.py makes), MobileNetV2 at alpha 1.0 on 96x96x3 images with
cortex_m4 required; `dvc repro` is timed from its start until it stops, with the preflight
stage's own seconds from its message.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tempfile
from itertools import takewhile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO / "tests")]
from run import commit, machine  # noqa: E402

SHAPES = (("digits (built in)", 16, 1, 10), ("28x28 grayscale IDX", 28, 1, 10), ("32x32 RGB folder", 32, 3, 3),
          ("64x64 RGB folder", 64, 3, 3), ("96x96 RGB (edgeqat data add's cap)", 96, 3, 3))


def int8_model(model_name: str, alpha: float, size: int, channels: int, classes: int, dest: Path) -> Path:
    from edgeqat.models.zoo import build_model
    from edgeqat.quantization.converter import convert_variant

    model = build_model(model_name, (size, size, channels), classes, alpha=alpha)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.random((1, size, size, channels), dtype=np.float32)]

    dest.write_bytes(convert_variant("ptq_int8", model, None, representative))
    return dest


def fail_fast(work: Path) -> dict:
    """`dvc repro` of a model cortex_m4 cannot hold, in a scratch pipeline repository: how long
    until it stops, which stages ran, and the preflight check's first line."""
    from integration.conftest import stages_run
    from integration.test_preflight_dvc import repro_that_cannot_fit

    _, proc, wall = repro_that_cannot_fit(work)
    out = proc.stdout + proc.stderr
    own = re.search(r"stopped before training \((\d+) s\)", out)
    lines = out.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("edgeqat: error: preflight")), len(lines))
    said = lines[start:start + 1] + list(takewhile(lambda ln: ln.startswith("  "), lines[start + 1:]))
    return {"wall": wall, "exit": proc.returncode, "stages": stages_run(out), "own": own and int(own.group(1)),
            "message": "\n".join(said) or "(no preflight error)"}


def main() -> int:
    from edgeqat.config import SHIPPED, load_params
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.validate import validate_on_device

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "default_gate_results.md")
    ap.add_argument("--no-preflight", action="store_true", help="leave out the fail-fast timing")
    args = ap.parse_args()
    started, load_start, measured = dt.datetime.now(dt.timezone.utc), os.getloadavg()[0], commit()
    params = load_params(REPO / "params.yaml")
    profiles = resolve_profiles([SHIPPED])
    cells: dict[str, list[str]] = {p.name: [] for p in profiles}
    passes: dict[str, bool] = {p.name: True for p in profiles}
    with tempfile.TemporaryDirectory() as tmp:
        for label, size, ch, k in SHAPES:
            path = int8_model(params.train.model, params.train.alpha, size, ch, k, Path(tmp) / f"{size}x{ch}.tflite")
            for prof in profiles:
                v = validate_on_device(path, prof, None, latency_runs=5, emulate=False, parity_samples=4)
                est = v.get("latency_ms_estimate")
                cell = ("PASS" if v["passed"] else "FAIL") + (f" {est:.3g} ms" if est is not None else "")
                if not v["passed"]:
                    cell += " (" + "; ".join(v.get("reasons") or [])[:90] + ")"
                cells[prof.name].append(cell)
                passes[prof.name] &= bool(v["passed"])
                print(f"{label}: {prof.name}: {cell}", flush=True)
        stop = None if args.no_preflight else fail_fast(Path(tmp))
    budgets = {p.name: p.latency_budget_ms for p in profiles}
    head = "| device | latency budget ms | " + " | ".join(s[0] for s in SHAPES) + " |"
    rows = [f"| {d} | {budgets[d] or '–'} | " + " | ".join(c) + " |" for d, c in cells.items()]
    every = [d for d, ok in passes.items() if ok]
    fast = "" if stop is None else f"""
## Fail fast: a required device the model cannot fit

MobileNetV2 at alpha 1.0 on 96x96x3 images with `cortex_m4` required (and `rpi4`), in a scratch git + DVC
repository with this project's pipeline: `dvc repro` exited {stop['exit']} after **{stop['wall']:.1f} s** from its start
(stages run: {', '.join(stop['stages']) or 'none'}); the preflight stage's own time, from its message:
**{stop['own'] if stop['own'] is not None else '?'} s**. What it said:

```
{stop['message']}
```
"""
    text = f"""# edgeqat benchmark: the default model against every device, on the README's data shapes

- commit: {measured}
- date: {started:%Y-%m-%d %H:%M} UTC
- machine: {machine()}
- 1-min load average: {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end (other jobs shared the cores)
- model: train.model={params.train.model}, train.alpha={params.train.alpha} (params.yaml), converted to ptq_int8
- default validate.required_devices: {', '.join(params.validate.required_devices) or '(none)'}

Estimated latency (the profile's speed model, or Vela's for Ethos-U) and the verdict, per input shape:

{head}
|---|---|{'---|' * len(SHAPES)}
{chr(10).join(rows)}

Devices that pass every shape: {', '.join(every) or 'none'}.
{fast}"""
    args.out.write_text(text)
    print(text)
    failing = [d for d in params.validate.required_devices if not passes.get(d, False)]
    stopped_early = stop is None or (stop["exit"] != 0 and stop["stages"] == ["prepare", "preflight"])
    return 1 if failing or not stopped_early else 0


if __name__ == "__main__":
    raise SystemExit(main())
