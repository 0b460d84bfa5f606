"""Benchmark: the first answer on a user's own image folder, end to end, the DVC way.

    python bench/first_answer.py [--images 1000] [--full] [--out bench/first_answer_results.md] [--keep DIR]

1. `git clone` this repository's HEAD into a scratch folder; write ``--images`` generated
   64x64x3 PNG images in 4 class folders to data/raw and run the README's own-data line
   `edgeqat data add data/raw` (it puts the folder under DVC, sets prepare.source,
   prepare.image_size and prepare.channels from the images, and commits);
2. the README's `dvc exp run -S convert.variants=quick`, timed from its start to the report:
   the first answer (fp32 against PTQ int8 against QAT int8, and the required devices'
   verdicts). When the preflight check stops it because a required device cannot fit, that
   time is reported too, and the run is repeated without that device, as the message says;
3. with ``--full``: the same experiment with ``convert.variants=all``, which must not run
   prepare, preflight or train again (DVC's run cache restores them);
4. the timings, the variant table and the checks, with the machine, its load and the date,
   to bench/first_answer_results.md. Exits non-zero when a check fails.

The images: a class-specific colour and stripe orientation plus noise, so a few epochs learn it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIZE, CLASSES = 64, ("red", "green", "blue", "grey")
LIMIT_S = 600  # the first answer within 10 minutes
sys.path.insert(0, str(REPO / "bench"))
from run import checks_table, commit, finish, machine, stages  # noqa: E402 - the benchmarks' shared helpers


def sh(cmd: list[str], cwd: Path, check: bool = True) -> tuple[str, float, int]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr, wall, proc.returncode


def write_images(folder: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    for k, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        colour = np.full(3, 90.0)
        colour[k % 3] = 200.0 if k < 3 else 90.0
        angle = np.pi * k / len(CLASSES)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * (np.cos(angle) * xx + np.sin(angle) * yy))
        for i in range(n // len(CLASSES)):
            img = colour * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 25, (SIZE, SIZE, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / name / f"{i:04d}.png")


def stage_seconds(clone: Path, ran: list[str]) -> dict[str, float]:
    out = {}
    for s in ran:
        f = clone / "logs" / "timings" / f"{s}.json"
        if f.is_file():
            out[s] = json.loads(f.read_text()).get("seconds")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--full", action="store_true", help="then the whole variant set as a follow-up experiment")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "first_answer_results.md")
    ap.add_argument("--keep", type=Path, help="clone here and keep it (default: a temporary folder)")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="edgeqat-first-answer-"))
    work.mkdir(parents=True, exist_ok=True)
    clone = work / "edgeqat"
    sh(["git", "clone", "-q", str(REPO), str(clone)], work)
    # what was measured: this repository's HEAD as cloned (the clone's own HEAD moves when data add commits)
    measured = commit(REPO)
    t = time.monotonic()
    for f in (clone / "data" / "raw").iterdir():
        f.unlink()
    write_images(clone / "data" / "raw", args.images)
    t_data = time.monotonic() - t
    for key in ("user.name", "user.email"):  # the clone's own identity: `edgeqat data add` commits
        sh(["git", "config", key, "bench" if key == "user.name" else "bench@example.com"], clone)
    said, t_add, _ = sh([str(BIN / "edgeqat"), "data", "add", "data/raw"], clone)
    chose = {k: v for k, v in re.findall(r"(prepare\.\w+)=([^,\s]+)", said)}
    print(f"[bench] {args.images} images in {clone / 'data' / 'raw'} ({t_data:.0f} s); edgeqat data add in "
          f"{t_add:.0f} s:\n{said.strip()}", flush=True)

    settings = ["-S", "convert.variants=quick"]  # the README's line: data add set prepare.*
    load = os.getloadavg()[0]
    out, t_first, rc = sh([str(BIN / "dvc"), "exp", "run", *settings], clone, check=False)
    runs = [("`dvc exp run` " + " ".join(settings[1::2]), stages(out), t_first, rc)]
    stopped = re.search(r"stopped before training \((\d+) s\)", out)
    t_answer = t_first
    stop_message = ""
    if rc != 0:
        stop_message = "\n".join(ln for ln in out.splitlines() if ln.startswith(("edgeqat: error: preflight", "  ")))
        keep = re.search(r"or stop requiring it: (validate\.required_devices=\[[^\]]*\])", out)
        if not stopped or not keep:
            sys.exit(f"dvc exp run failed ({rc}) and not at the preflight check:\n{out[-4000:]}")
        print(f"[bench] preflight stopped the run after {t_first:.0f} s; again with {keep.group(1)}", flush=True)
        settings += ["-S", keep.group(1)]
        out, t_again, rc = sh([str(BIN / "dvc"), "exp", "run", *settings], clone)
        runs.append(("... and " + keep.group(1), stages(out), t_again, rc))
        t_answer = t_first + t_again
    ran = runs[-1][1]
    seconds = stage_seconds(clone, ran)
    summary = json.loads((clone / "reports" / "summary.json").read_text())
    table, _, _ = sh([str(BIN / "edgeqat"), "report"], clone)
    print(f"[bench] first answer in {t_answer:.0f} s\n{table}", flush=True)

    t_full, ran_full = None, []
    if args.full:
        full = ["convert.variants=all" if x == "convert.variants=quick" else x for x in settings]
        out, t_full, _ = sh([str(BIN / "dvc"), "exp", "run", *full], clone)
        ran_full = stages(out)
        print(f"[bench] the whole set as a follow-up: {ran_full} in {t_full:.0f} s", flush=True)

    v = summary["variants"]
    checks = [
        (f"first answer within {LIMIT_S // 60} min", t_answer <= LIMIT_S, f"{t_answer:.0f} s"),
        ("first answer is fp32, ptq_int8 and qat_int8", sorted(v) == ["fp32", "ptq_int8", "qat_int8"], ", ".join(sorted(v))),
        ("prune and cluster trained nothing", all(s not in seconds or seconds[s] < 15 for s in ("prune", "cluster")),
         ", ".join(f"{s} {seconds.get(s, 0):.1f} s" for s in ("prune", "cluster"))),
        ("required devices have verdicts", all(d in summary["devices"] for d in summary["required_devices"]),
         ", ".join(f"{d}: {'pass' if summary['devices'][d]['passed'] else 'FAIL'}" for d in summary["required_devices"])),
    ]
    if args.full:
        checks.append(("the follow-up reuses prepare, preflight and train",
                       not {"prepare", "preflight", "train"} & set(ran_full), ", ".join(ran_full)))

    sys.path.insert(0, str(REPO / "src"))
    from edgeqat.reporting.tables import summary_markdown, with_latency

    latency = json.loads((clone / "logs" / "timings" / "evaluate.json").read_text())
    lines = [
        "# edgeqat benchmark: the first answer on your own images",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- 1-min load average: {load:.1f} when the first `dvc exp run` started, {os.getloadavg()[0]:.1f} at the end "
        "(other jobs shared the cores)",
        f"- commit: {measured} (cloned; its HEAD then also holds the data commit `edgeqat data add` made)",
        f"- data: {args.images} generated 64x64x3 PNG images in {len(CLASSES)} class folders; `edgeqat data add data/raw` "
        f"({t_add:.0f} s) put them under DVC and set " + (", ".join(f"{k}={v}" for k, v in chose.items()) or "prepare.*")
        + "; otherwise the shipped params.yaml",
        "",
        "## Timings",
        "",
        "| run | stages run | wall s | exit |",
        "|---|---|---|---|",
        *[f"| {name} | {', '.join(r) or 'none'} | {w:.0f} | {c} |" for name, r, w, c in runs],
        *([f"| the same with `-S convert.variants=all` (follow-up) | {', '.join(ran_full)} | {t_full:.0f} | 0 |"]
          if args.full else []),
        "",
        f"First answer: **{t_answer:.0f} s** from the first `dvc exp run` to the report"
        + (f" (the preflight check stopped the first run after {stopped.group(1)} s of its own)" if stopped else "") + ".",
        "",
        *(["What the preflight check said when it stopped the first run:", "", "```", stop_message, "```", ""]
          if stop_message else []),
        "Per stage of the run that gave it (wall s, from logs/timings): "
        + ", ".join(f"{s} {w:.0f}" for s, w in seconds.items() if w is not None),
        "",
        "## The answer",
        "",
        summary_markdown(with_latency(summary, latency)).split("\n", 2)[2].strip(),
        "",
        *checks_table("Checks", checks),
    ]
    return finish(args.out, lines, checks)


if __name__ == "__main__":
    sys.exit(main())
