"""Benchmark: the whole pipeline on the default data, from a clean clone, the DVC way.

    python bench/run.py [--out bench/results.md] [--keep DIR]

1. `git clone` this repository's HEAD into a scratch folder and `dvc repro` there
   (the default params.yaml: scikit-learn's digits, the default DS-CNN);
2. a second `dvc repro` (must run nothing: its wall time is reported);
3. `dvc exp run -S qat.epochs=3` (must run only qat and what follows; the new MLflow
   run must still carry every stage's metrics);
4. the comparison table and the foundation's acceptance checks, with the machine and date,
   to bench/results.md. Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path) -> tuple[str, float]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr, wall


def stages(out: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_]+)'", out)


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def commit(repo: Path = REPO) -> str:
    """The commit a bench measured, marked when the working tree had uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True,
                           text=True).stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results.md")
    ap.add_argument("--keep", type=Path, help="clone here and keep it (default: a temporary folder)")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="edgeqat-bench-"))
    clone = work / "edgeqat"
    sh(["git", "clone", "-q", str(REPO), str(clone)], work)
    print(f"[bench] clone in {clone}", flush=True)

    out, t_full = sh([str(BIN / "dvc"), "repro"], clone)
    ran_full = stages(out)
    print(f"[bench] dvc repro: {ran_full} in {t_full:.0f} s", flush=True)
    out, t_noop = sh([str(BIN / "dvc"), "repro"], clone)
    ran_noop = stages(out)
    print(f"[bench] second dvc repro: {ran_noop} in {t_noop:.1f} s", flush=True)
    summary = json.loads((clone / "reports" / "summary.json").read_text())
    latency = json.loads((clone / "logs" / "timings" / "evaluate.json").read_text())  # host latency: run-varying

    out, t_exp = sh([str(BIN / "dvc"), "exp", "run", "-S", "qat.epochs=3"], clone)
    ran_exp = stages(out)
    print(f"[bench] dvc exp run -S qat.epochs=3: {ran_exp} in {t_exp:.0f} s", flush=True)

    sys.path.insert(0, str(REPO / "src"))
    from mlflow.tracking import MlflowClient

    from edgeqat.workspace.stages import STAGES

    client = MlflowClient(tracking_uri=f"sqlite:///{clone / 'mlflow.db'}")
    exp = client.get_experiment_by_name("edgeqat")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    latest, first = runs[0], runs[-1]
    stage_prefixes = {k.split("/")[0] for k in latest.data.metrics}

    v = summary["variants"]
    fp32, ptq, qat = v["fp32"], v["ptq_int8"], v["qat_int8"]
    checks = [
        ("qat_int8 accuracy >= fp32 - 0.01", qat["accuracy"] >= fp32["accuracy"] - 0.01,
         f"{qat['accuracy']:.4f} vs {fp32['accuracy']:.4f}"),
        ("qat_int8 accuracy >= ptq_int8 - 0.005", qat["accuracy"] >= ptq["accuracy"] - 0.005,
         f"{qat['accuracy']:.4f} vs {ptq['accuracy']:.4f}"),
        ("qat_int8 size <= 0.35 x fp32", qat["size_bytes"] <= 0.35 * fp32["size_bytes"],
         f"{qat['size_bytes'] / fp32['size_bytes']:.3f}x"),
        ("first dvc repro runs every stage", sorted(ran_full) == sorted(s.name for s in STAGES), ", ".join(ran_full)),
        ("second dvc repro runs nothing within 5 s", not ran_noop and t_noop <= 5.0, f"{t_noop:.1f} s"),
        ("qat.epochs change runs only qat and what reads its model",
         sorted(ran_exp) == sorted(["qat", "convert", "evaluate", "validate", "recommend", "report", "track", "register"]),
         ", ".join(ran_exp)),
        ("new MLflow run carries every stage's metrics",
         {"prepare", "train", "qat", "convert", "evaluate"} <= stage_prefixes and len(latest.data.metrics) == len(first.data.metrics),
         f"{len(latest.data.metrics)} metrics, stages {sorted(stage_prefixes)}"),
    ]

    from edgeqat.reporting.tables import summary_markdown, with_latency

    lines = [
        "# edgeqat benchmark: the pipeline on the default data",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- commit: {sh(['git', 'rev-parse', 'HEAD'], clone)[0].strip()}",
        "- data: scikit-learn's handwritten digits (1,797 images, 8x8 upsampled to 16x16), default params.yaml",
        "",
        "## Variants (first run)",
        "",
        summary_markdown(with_latency(summary, latency)).split("\n", 2)[2].strip(),
        "",
        "## Pipeline timings",
        "",
        "| run | stages run | wall s |",
        "|---|---|---|",
        f"| `dvc repro` (clean clone) | {', '.join(ran_full)} | {t_full:.0f} |",
        f"| `dvc repro` again | {', '.join(ran_noop) or 'none'} | {t_noop:.1f} |",
        f"| `dvc exp run -S qat.epochs=3` | {', '.join(ran_exp)} | {t_exp:.0f} |",
        "",
        *checks_table("Acceptance checks", checks),
    ]
    return finish(args.out, lines, checks)


def checks_table(title: str, checks: list[tuple[str, bool, str]]) -> list[str]:
    return [f"## {title}", "", "| check | result | measured |", "|---|---|---|",
            *[f"| {name} | {'pass' if ok else 'FAIL'} | {measured} |" for name, ok, measured in checks], ""]


def finish(out: Path, lines: list[str], checks: list[tuple[str, bool, str]]) -> int:
    """Write and print the results; the exit status says whether every check passed."""
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
