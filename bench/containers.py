"""Benchmark: the compiled pipeline as subprocesses and in containers, and the component image.

    python bench/containers.py [--out bench/containers_results.md] [--from-base] [--order docker,subprocess]

In one session on this machine: `make image` (with --from-base, first from an empty build cache
on the existing base image: `docker builder prune`, then pip downloads and installs everything),
the image's size and what takes it (its layers, and the files of each distribution in its venv:
bench/image_contents.py, run inside the image), then ONE compiled pipeline run twice against a
real `mlflow server` on 127.0.0.1: `edgeqat pipeline run --local` (each task a subprocess) and
`edgeqat pipeline run --local --docker` (each task a container of the image, host network, a
pipeline root the image's uid 1000 can write), each in a fresh pipeline root (no kfp.local
cache). The parameters are tests/integration/test_kfp_docker.py's: 8x8 digits, one epoch per
fine-tune, five variants, so every component runs. While the containers run, each one's peak
memory is read from its cgroup (v1 memory.max_usage_in_bytes, page cache included; polled, so
a task shorter than the poll can be missed). Needs a Docker engine (`make docker`) and this venv
(dev extra: the test helpers start the server). Each session is added at the top of the results
file, above the earlier ones: on a shared machine the load of each session is part of its figures.
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
from run import machine  # noqa: E402

from integration.conftest import BIN, start_mlflow_server, stop_process_group, wait_until_up  # noqa: E402
from integration.test_kfp_docker import VARIANTS, lean_params  # noqa: E402

MB = 1e6
TITLE = "# The component image and the pipeline in containers (bench/containers.py)\n\n"
RUNNERS = {"subprocess": "subprocess (`pipeline run --local`)", "docker": "docker (`pipeline run --local --docker`)"}
CGROUP = Path("/sys/fs/cgroup/memory/docker")  # cgroup v1 with the cgroupfs driver (Debian's docker.io)


def load() -> float:
    return os.getloadavg()[0]


def sh(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[str, float]:
    """Run ``cmd``; its output and wall time. Fails loudly with the output's tail."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr, time.monotonic() - t0


def make_image(from_base: bool) -> dict:
    """`make image`, timed; with ``from_base`` the build cache is emptied first."""
    if from_base:
        sh(["docker", "builder", "prune", "--all", "--force"], REPO)
    start = load()
    out, wall = sh(["make", "image"], REPO)
    built = re.search(r"built (\S+) in (\d+) s: (\d+) MB", out)
    return {"wall_s": wall, "build_s": int(built.group(2)) if built else None, "load": (start, load()),
            "tag": (REPO / ".cache" / "edgeqat-image").read_text().strip()}


def image_facts(tag: str) -> dict:
    import docker

    img = docker.from_env().images.get(tag)
    layers = [(h["Size"], re.sub(r"\s+", " ", h["CreatedBy"].replace("/bin/sh -c ", ""))[:70])
              for h in img.history() if h["Size"] > 0]
    out, _ = sh(["docker", "run", "--rm", "--network", "none", "-v", f"{REPO / 'bench'}:/bench:ro", tag,
                 "python3", "/bench/image_contents.py"], REPO)
    return {"id": img.id, "size": img.attrs["Size"], "layers": layers, "contents": json.loads(out.splitlines()[-1])}


class PeakMemory:
    """Each kfp.local container's peak memory (its cgroup), by task, while a docker run goes on."""

    def __init__(self, every: float = 0.25):
        import docker

        self.client, self.every, self.peak, self._stop = docker.from_env(), every, {}, threading.Event()
        self._names: dict[str, str] = {}
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _task(self, container) -> str | None:
        if container.id not in self._names:
            args = container.attrs.get("Args", [])
            if "--function_to_execute" in args:
                self._names[container.id] = args[args.index("--function_to_execute") + 1]
        return self._names.get(container.id)

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            try:
                running = self.client.containers.list()
            except Exception:  # a container removed between list and inspect: next poll
                continue
            for c in running:
                task = self._task(c)
                try:
                    used = int((CGROUP / c.id / "memory.max_usage_in_bytes").read_text())
                except (OSError, ValueError):
                    continue
                if task:
                    self.peak[task] = max(self.peak.get(task, 0), used)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def pipeline_run(cwd: Path, package: Path, mlflow_uri: str, docker: bool) -> dict:
    cwd.mkdir()
    (cwd / "params.yaml").write_text(lean_params())
    cmd = [str(BIN / "edgeqat"), "pipeline", "run", "--local", "--params", "params.yaml", "--package", str(package),
           "--pipeline-root", "kfp", "--out", "result.json", "--mlflow-uri", mlflow_uri,
           "--tag", f"purpose=bench-{'docker' if docker else 'subprocess'}", *(["--docker"] if docker else [])]
    start = load()
    print(f"[bench] pipeline run {'--docker ' if docker else ''}(load {start:.2f})", flush=True)
    _, wall = sh(cmd, cwd, {"MLFLOW_TRACKING_URI": "", "EDGEQAT_IMAGE": ""})
    result = json.loads((cwd / "result.json").read_text())
    ok = result["status"] == "FINISHED" and result["validation_passed"] and result["registered"]
    if not ok:
        raise SystemExit(f"the {'docker' if docker else 'subprocess'} run did not pass and register: {result}")
    return {"wall_s": wall, "kfp_s": result["seconds"], "load": (start, load()), "run_id": result["run_id"]}


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "components", "pipelines", "Dockerfile",
                            "pyproject.toml", "constraints.txt"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return head + (" (with uncommitted changes to what the image holds)" if dirty else "")


def mb(n: float) -> str:
    return f"{n / MB:,.0f} MB"


def top(d: dict[str, int], n: int = 8) -> str:
    return ", ".join(f"{k} {v / MB:.0f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n] if v >= 0.5 * MB)


def report(facts: dict, builds: list[tuple[str, dict]], runs: dict, peaks: dict, meta: dict) -> str:
    c = facts["contents"]
    lines = [
        f"## Session of {meta['date']} UTC",
        "",
        f"- commit: {meta['commit']}; date (UTC): {meta['date']}",
        f"- machine: {meta['machine']}; Docker engine {meta['engine']}",
        f"- 1-min load average: {meta['load'][0]:.2f} at start, {meta['load'][1]:.2f} at end "
        "(a 2-core machine shared with other builders: the times below move with it)",
        f"- pipeline: tests/integration/test_kfp_docker.py's parameters (8x8 digits, one epoch per fine-tune, "
        f"variants {', '.join(VARIANTS)}), compiled once, run against a real `mlflow server` on 127.0.0.1",
        "",
        "### Building the image",
        "",
        "| build | make image wall | docker build | load at start / end |",
        "|---|---|---|---|",
    ]
    for label, b in builds:
        lines.append(f"| {label} | {b['wall_s']:.0f} s | {b['build_s']} s | {b['load'][0]:.2f} / {b['load'][1]:.2f} |")
    layer_rows = [f"| {mb(size)} | `{what}` |" for size, what in facts["layers"]]
    lines += [
        "",
        f"### The image: {facts['size'] / MB:,.0f} MB (`{facts['id'][7:19]}`, `{builds[-1][1]['tag']}`)",
        "",
        "| layer | made by |",
        "|---|---|",
        *layer_rows,
        "",
        f"Inside the venv ({c['distributions']} distributions, {mb(c['venv_files_bytes'])} of files): "
        f"{mb(c['shared_objects_bytes'])} shared objects, {mb(c['bytecode_bytes'])} compiled bytecode.",
        "",
        f"- largest distributions (MB): {top(dict(c['largest']), 12)}",
        f"- only there for MLflow beyond its client package mlflow-skinny (server, UI, SQL store, data libraries): "
        f"{mb(sum(c['mlflow_beyond_skinny'].values()))}: {top(c['mlflow_beyond_skinny'])}",
        f"- only there for DVC: {mb(sum(c['dvc_only'].values()))}: {top(c['dvc_only'])}",
        f"- only there for kfp (its cluster client): {mb(sum(c['kfp_only'].values()))}: {top(c['kfp_only'])}",
        "",
        "### One pipeline, two runners (in the order run)",
        "",
        "| runner | wall (CLI) | kfp.local run | load at start / end |",
        "|---|---|---|---|",
        *[f"| {RUNNERS[name]} | {r['wall_s']:.0f} s | {r['kfp_s']:.0f} s | {r['load'][0]:.2f} / {r['load'][1]:.2f} |"
          for name, r in runs.items()],
        "",
        "Both runs passed the gate and registered a version on the server. Peak memory of each "
        "container (cgroup, page cache included), MiB: "
        + ", ".join(f"{t} {v / 2**20:.0f}" for t, v in sorted(peaks.items(), key=lambda kv: -kv[1])) + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "containers_results.md")
    ap.add_argument("--from-base", action="store_true", help="first build the image with an empty build cache")
    ap.add_argument("--order", default="subprocess,docker", help="the runners, in the order to run them")
    args = ap.parse_args()
    import docker

    meta = {"commit": commit(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "machine": machine(), "engine": docker.from_env().version()["Version"], "load": [load()]}
    print(f"[bench] {meta['commit']}, load {meta['load'][0]:.2f}", flush=True)
    builds = []
    if args.from_base:
        builds.append(("from the base, empty build cache", make_image(from_base=True)))
        print(f"[bench] make image from the base: {builds[-1][1]['wall_s']:.0f} s", flush=True)
    builds.append(("cached (nothing changed)", make_image(from_base=False)))
    tag = builds[-1][1]["tag"]
    facts = image_facts(tag)
    with tempfile.TemporaryDirectory(prefix="edgeqat-bench-containers-") as tmp:
        tmp = Path(tmp)
        (tmp / "mlflow").mkdir()
        server, url = start_mlflow_server(tmp / "mlflow")
        try:
            wait_until_up(server, url, tmp / "mlflow" / "server.log")
            package = tmp / "pipeline.yaml"
            sh([str(BIN / "edgeqat"), "pipeline", "compile", "--image", tag, "--out", str(package)], tmp)
            runs = {}
            order = args.order.split(",")
            if sorted(order) != sorted(RUNNERS):
                raise SystemExit(f"--order {args.order}: name each runner once ({','.join(RUNNERS)})")
            for name in order:
                if name == "docker":
                    with PeakMemory() as mem:
                        runs[name] = pipeline_run(tmp / name, package, url, docker=True)
                else:
                    runs[name] = pipeline_run(tmp / name, package, url, docker=False)
        finally:
            stop_process_group(server)
    meta["load"].append(load())
    text = report(facts, builds, runs, mem.peak, meta)
    earlier = args.out.read_text().removeprefix(TITLE) if args.out.is_file() else ""
    args.out.write_text(TITLE + text + ("\n" + earlier if earlier else ""))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
