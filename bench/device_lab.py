"""Device-lab benchmark: measured on the device against the estimates, one measurement over SSH,
and what a calibration does to the estimates (issue 30's figures).

    python bench/device_lab.py [--tflite DIR] [--out bench/device_lab_results.md] [--keep DIR]

1. The default run's .tflite files: ``--tflite DIR``, else a clone of this repository's HEAD
   and ``dvc repro convert`` there (the default params.yaml). Each file's SHA-256 is compared
   with the committed run's (reports/host_latency.json).
2. (a) Every variant measured with the ``host`` profile (its runner in a child process, 50 timed
   runs after the warm-up, the profile's one thread and XNNPACK) beside the ``j1900`` and
   ``rpi4`` estimates for the same file, and estimate / measured.
3. (b) The wall time of one remote measurement over a loopback sshd (tests/sshd_lab.py), the way
   ``edgeqat validate`` makes it: qat_int8, 16 parity samples, warm-up, 50 timed runs.
4. (c) ``edgeqat devices calibrate host`` into a scratch calibration file, then zoo models at
   sizes the reference set does not have: measured, estimated before (``host`` has no estimate;
   the published x86-PC proxy ``j1900`` and ``rpi4``) and after (from the measured rows).

Needs root for sshd (``make sshd``). Not part of the test suite. Writes the results with the
commit, the UTC date, the machine and the 1-minute load average at the start and end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(Path(__file__).resolve().parent)]
from run import BIN, machine, sh  # noqa: E402

RUNS = 50
PARITY_SAMPLES = 16  # validate.emulate_samples' default: what `edgeqat validate` sends to a board
HELDOUT = (("resnet", 1.5, 32), ("dscnn", 1.5, 40), ("mobilenetv2", 0.75, 56))  # sizes the reference set lacks


def load() -> float:
    return os.getloadavg()[0]


def default_tflite(keep: Path | None) -> tuple[Path, list[str]]:
    """models/tflite of the default run: a clone of HEAD, `dvc repro convert` there."""
    work = keep or Path(tempfile.mkdtemp(prefix="edgeqat-devlab-"))
    work.mkdir(parents=True, exist_ok=True)
    clone = work / "edgeqat"
    sh(["git", "clone", "-q", str(REPO), str(clone)], work)
    print(f"[device_lab] dvc repro convert in {clone} (the default params.yaml)", flush=True)
    _, wall = sh([str(BIN / "dvc"), "repro", "convert"], clone)
    return clone / "models" / "tflite", [f"`dvc repro convert` in a clone of HEAD: {wall:.0f} s wall"]


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.4g}"


def _est(e: dict) -> str:
    ms = e.get("latency_ms_estimate")
    if ms is None:
        return "– (" + (e.get("note") or "no estimate").split(":")[0] + ")"
    band = (e.get("error_band") or {}).get("median_rel_error")
    tags = ([f"±{band:.0%}"] if band is not None else []) + (["extrapolated"] if e.get("extrapolated") else [])
    return f"{ms:.4g}" + (f" ({', '.join(tags)})" if tags else "")


def host_vs_estimates(tflite: Path) -> tuple[list[str], dict]:
    """(a): each variant on `host` (measured) beside the j1900 and rpi4 estimates."""
    from edgeqat.devices.calibrate import measure_model
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.speed import estimate_latency

    host, j1900, rpi4 = resolve_profiles(["host", "j1900", "rpi4"])
    committed = json.loads((REPO / "reports" / "host_latency.json").read_text())
    files = sorted(tflite.glob("*.tflite"))
    lines = [f"| variant | same file as the committed run | host p50 ms | host p90 ms | j1900 estimate ms | rpi4 estimate ms "
             "| estimate / measured (j1900, rpi4) |", "|---|---|---|---|---|---|---|"]
    out = {}
    for path in files:
        name = path.stem
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        same = "yes" if (committed.get(name) or {}).get("sha256") == sha else "no"
        work, m = measure_model(host, path, RUNS)
        ej, er = estimate_latency(j1900, work), estimate_latency(rpi4, work)
        ratio = [f"{e['latency_ms_estimate'] / m['p50_ms']:.2g}x" if e.get("latency_ms_estimate") else "–" for e in (ej, er)]
        lines.append(f"| {name} | {same} | {m['p50_ms']:.4f} | {m['p90_ms']:.4f} | {_est(ej)} | {_est(er)} | "
                     f"{', '.join(ratio)} |")
        out[name] = {"p50": m["p50_ms"], "cpu": m.get("cpu"), "runtime": f"{m.get('runtime')} {m.get('runtime_version')}"}
        print(f"[device_lab] host {name}: p50 {m['p50_ms']:.4f} ms; j1900 {_est(ej)}; rpi4 {_est(er)}", flush=True)
    return lines, out


def remote_wall(tflite: Path, tmp: Path) -> list[str]:
    """(b): one remote measurement over a loopback sshd, three times; and the same with `host`."""
    import numpy as np

    from edgeqat.devices.on_device import sample_inputs
    from edgeqat.devices.profiles import Connect, resolve_profiles
    from edgeqat.devices.runtimes.measured import measure
    from sshd_lab import loopback_sshd, unavailable

    why = unavailable()
    if why:
        return [f"Not measured: {why}."]
    model = tflite / "qat_int8.tflite"
    (host,) = resolve_profiles(["host"])
    raw, _ = sample_inputs(model, None, PARITY_SAMPLES, host.xnnpack)
    root = tmp / "sshd"
    root.mkdir()
    rows = []
    with loopback_sshd(root) as lab:
        conn = Connect(url=f"ssh://{lab['user']}@127.0.0.1:{lab['port']}", python=sys.executable,
                       identity_file=str(root / "user_key"),
                       ssh_options=[f"UserKnownHostsFile={root / 'known_hosts'}", "StrictHostKeyChecking=yes"])
        board = host.model_copy(update={"name": "loopback_board", "connect": conn})
        for prof, where in ((board, "SSH to 127.0.0.1 (sshd)"), (host, "`host` (connect: local)")):
            walls = []
            for _ in range(3):
                m = measure(prof, model, np.asarray(raw), runs=RUNS)
                walls.append(m.wall_s)
            rows.append(f"| {where} | {', '.join(f'{w:.2f}' for w in walls)} | {statistics.median(walls):.2f} | "
                        f"{m.p50:.4f} |")
            print(f"[device_lab] {where}: wall {walls}", flush=True)
    return ["| measured through | wall s, 3 runs | median wall s | p50 ms (last run) |", "|---|---|---|---|", *rows]


def calibration_before_after(tmp: Path) -> list[str]:
    """(c): `edgeqat devices calibrate host`, then held-out zoo models before and after."""
    from edgeqat.devices.calibrate import measure_model, reference_model
    from edgeqat.devices.calibration import read_rows
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.speed import estimate_latency
    from edgeqat.devices.workload import analyze

    calib = tmp / "measured.csv"
    t = time.monotonic()
    proc = subprocess.run([str(BIN / "edgeqat"), "devices", "calibrate", "host", "--json", "--calibration", str(calib)],
                          cwd=tmp, capture_output=True, text=True)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        sys.exit(f"edgeqat devices calibrate host failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout)
    host, j1900, rpi4 = resolve_profiles(["host", "j1900", "rpi4"])
    lines = [f"`edgeqat devices calibrate host` ({len(res['rows'])} reference models, 30 timed runs each): {wall:.0f} s wall.", "",
             "| reference model | M MACs | measured ms | j1900 published estimate ms | leave-one-out estimate ms |",
             "|---|---|---|---|---|"]
    proxy_err = []
    for r in res["rows"]:
        path = reference_model(*_parse(r["model"]))
        e = estimate_latency(j1900, analyze(path))
        proxy = e.get("latency_ms_estimate")
        if proxy is not None:
            proxy_err.append(abs(proxy - r["measured_ms"]) / r["measured_ms"])
        lines.append(f"| {r['model']} | {r['macs'] / 1e6:.3g} | {r['measured_ms']:.4f} | {_ms(proxy)} | {_ms(r['loo_ms'])} |")
    after = res["after"]
    lines += ["", f"Leave-one-out over the measured rows (after): median {after['median_rel_error']:.1%}, "
                  f"max {after['max_rel_error']:.1%} ({after['heldout_points']} points). Before: `host` has no estimate "
                  "(no published figures for an unknown CPU); the published x86-PC proxy `j1900` (Raspberry Pi 4 rows) is "
                  f"off by a median {statistics.median(proxy_err):.0%} (max {max(proxy_err):.0%}) on the same references.",
              "", "| held-out model (a size not in the set) | M MACs | measured ms | before: j1900 / rpi4 estimate ms (error) "
                  "| after: host estimate ms (error) | source after |", "|---|---|---|---|---|---|"]
    rows = read_rows(calib)
    for model, alpha, size in HELDOUT:
        path = reference_model(model, alpha, size, "int8", tmp / "heldout")
        work, m = measure_model(host, path, RUNS)
        ms = m["p50_ms"]
        before = [estimate_latency(p, work).get("latency_ms_estimate") for p in (j1900, rpi4)]
        after_e = estimate_latency(host, work, rows)
        est = after_e["latency_ms_estimate"]
        b = " / ".join(f"{x:.4f} ({abs(x - ms) / ms:.0%})" for x in before if x is not None)
        lines.append(f"| {path.stem} | {work.total_macs / 1e6:.3g} | {ms:.4f} | {b} | {est:.4f} ({abs(est - ms) / ms:.1%}) | "
                     f"{after_e.get('source')}{', extrapolated' if after_e.get('extrapolated') else ''} |")
        print(f"[device_lab] held-out {path.stem}: measured {ms:.4f}, after {est:.4f}", flush=True)
    return lines


def _parse(name: str) -> tuple[str, float, int]:
    """reference_name's "resnet_a1.5_32x32x3_int8" -> ("resnet", 1.5, 32)."""
    model, alpha, size = name.split("_")[:3]
    return model, float(alpha[1:]), int(size.split("x")[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflite", type=Path, help="the default run's models/tflite (default: build it in a clone)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "device_lab_results.md")
    ap.add_argument("--keep", type=Path, help="make the clone here and keep it")
    args = ap.parse_args()

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True).stdout
    start, load0, t0 = dt.datetime.now(dt.timezone.utc), load(), time.monotonic()
    notes = []
    tflite = args.tflite
    if tflite is None:
        tflite, notes = default_tflite(args.keep)
    with tempfile.TemporaryDirectory(prefix="edgeqat-devlab-") as tmp:
        tmp = Path(tmp)
        sections = {}
        for key, fn in (("a", lambda: host_vs_estimates(tflite)), ("b", lambda: remote_wall(tflite, tmp)),
                        ("c", lambda: calibration_before_after(tmp))):
            l_start, t = load(), time.monotonic()
            res = fn()
            sections[key] = (res, l_start, load(), time.monotonic() - t)
    a_lines, host_info = sections["a"][0]
    any_info = next(iter(host_info.values()), {})

    def meta(key: str) -> str:
        _, l0, l1, wall = sections[key]
        return f"_{wall:.0f} s wall; 1-min load {l0:.1f} at its start, {l1:.1f} at its end._"

    lines = ["# Device lab: measured on the device, estimates, SSH, calibration", "",
             f"- commit: {commit}" + (" (with uncommitted changes under src/)" if dirty else ""),
             f"- date: {start:%Y-%m-%d %H:%M} UTC",
             f"- machine: {machine()}",
             f"- `host` measured on: {any_info.get('cpu')}, {any_info.get('runtime')}, 1 thread, XNNPACK",
             f"- 1-min load average: {load0:.1f} at the start, {load():.1f} at the end (2 cores shared with other jobs: "
             "above 2 means waiting for a core)",
             f"- total wall: {time.monotonic() - t0:.0f} s" + "".join(f"; {n}" for n in notes),
             f"- produced by `python bench/device_lab.py` (one run)", "",
             "## (a) The default variants: measured on `host` vs the j1900 and rpi4 estimates", "",
             f"Each file measured with the `host` profile ({RUNS} timed runs after its warm-up, seeded random inputs), "
             "the way `edgeqat validate -d host` measures. The j1900 and rpi4 columns are the estimates edgeqat gives "
             "those profiles for the same file (`j1900` has no J1900 figures: it borrows the Raspberry Pi 4's rows), "
             "with their held-out error band; estimate / measured compares a board's estimate with this PC's "
             "measurement, so it is not an error, but how far the ARM-proxy estimate is from an x86 PC running the "
             "same file.", "", meta("a"), "", *a_lines, "",
             "## (b) One remote measurement over SSH", "",
             f"`measure()` over a loopback sshd (a real OpenSSH server on 127.0.0.1, the client's own key and known_hosts) "
             f"with this machine's Python as the board's: connect, upload (runner, model, {PARITY_SAMPLES} parity "
             f"samples), load, one run per sample, warm-up, {RUNS} timed runs, answer. `host` is the same without SSH.",
             "", meta("b"), "", *sections["b"][0], "",
             "## (c) Calibration: `edgeqat devices calibrate host` before and after", "", meta("c"), "",
             *sections["c"][0], ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
