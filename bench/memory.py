"""Memory does not grow with the data: peak RSS of ``prepare`` and ``train`` at N and 10N images.

Acceptance criterion: at 10N images (which decode to at least 2 GB of float32) the peak
memory of each stage stays within 1.5x of its peak at N images.

    python bench/memory.py [--n 4400] [--workdir bench/work/memory] [--epochs 1]
                           [--out bench/memory_results.md] [--keep]

The data are synthetic 64x64x3 uint8 images in 10 classes (a class-dependent colour and
stripe pattern plus noise, so training has something to learn), written to an ``.npz``
chunk by chunk, so the generator itself never holds the data set. Each stage runs as the
``edgeqat`` CLI in its own fresh process; its peak memory is the ``ru_maxrss`` the kernel
reports for it. A small wrapper process launches each stage and reads
``getrusage(RUSAGE_CHILDREN)`` right after it exits, so the figure covers that stage only.

Exit status: 0 when every ratio is within the limit, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

SIZE, CHANNELS, CLASSES = 64, 3, 10
LIMIT = 1.5
CHUNK = 2048  # images generated and written at a time

# Run CMD... in a child, then print that child's peak RSS (KiB on Linux, bytes on macOS).
# This wrapper is itself a fresh process, so RUSAGE_CHILDREN covers exactly one stage.
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


def float32_bytes(n: int) -> int:
    return n * SIZE * SIZE * CHANNELS * 4


def _templates(rng: np.random.Generator) -> np.ndarray:
    """One float pattern per class in [0, 255]: a colour plus oriented stripes."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    out = np.empty((CLASSES, SIZE, SIZE, CHANNELS), np.float32)
    for k in range(CLASSES):
        angle = np.pi * k / CLASSES
        freq = 2 + (k % 4)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
        colour = rng.uniform(0.3, 1.0, CHANNELS).astype(np.float32)
        out[k] = 255.0 * stripes[..., None] * colour
    return out


def write_npz(path: Path, n: int, seed: int = 0) -> None:
    """Write ``x`` uint8 (n, 64, 64, 3) and ``y`` int64 (n,) as an uncompressed .npz, in chunks."""
    rng = np.random.default_rng(seed)
    templates = _templates(rng)
    y = np.resize(np.arange(CLASSES, dtype=np.int64), n)  # balanced, then shuffled
    rng.shuffle(y)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("y.npy", "w") as f:
            np.lib.format.write_array(f, y, allow_pickle=False)
        with zf.open("x.npy", "w", force_zip64=True) as f:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                      "fortran_order": False, "shape": (n, SIZE, SIZE, CHANNELS)}
            np.lib.format.write_array_header_1_0(f, header)
            for start in range(0, n, CHUNK):
                labels = y[start : start + CHUNK]
                noise = rng.normal(0.0, 40.0, (len(labels), SIZE, SIZE, CHANNELS)).astype(np.float32)
                gain = rng.uniform(0.6, 1.0, (len(labels), 1, 1, 1)).astype(np.float32)
                x = np.clip(templates[labels] * gain + noise, 0, 255).astype(np.uint8)
                f.write(x.tobytes())
    os.replace(tmp, path)


def write_params(path: Path, npz: Path, epochs: int) -> None:
    params = {
        "prepare": {"source": "npz", "path": str(npz), "image_size": SIZE, "channels": CHANNELS},
        "train": {"epochs": epochs, "early_stopping_patience": 0},
    }
    path.write_text(json.dumps(params, indent=2) + "\n")  # JSON is valid YAML


def _edgeqat() -> list[str]:
    script = Path(sys.executable).with_name("edgeqat")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from edgeqat.adapters.cli.app import main; main()"]


def measure(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` in a fresh wrapper; return (peak RSS in MiB, wall seconds)."""
    t0 = time.monotonic()
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.monotonic() - t0
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = log.read_text()[-3000:] if log.is_file() else ""
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    maxrss = int(lines[-1])
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss units
    return maxrss / scale, wall


def machine() -> str:
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        ram = f"{pages * page / 2**30:.1f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        ram = "RAM unknown"
    return f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, {ram}"


def run_size(work: Path, n: int, epochs: int) -> dict[str, tuple[float, float]]:
    d = work / f"n{n}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    npz = d / "raw.npz"
    t0 = time.monotonic()
    write_npz(npz, n)
    print(f"  generated {n:,} images -> {npz} ({npz.stat().st_size / 2**20:.0f} MiB) in {time.monotonic() - t0:.1f}s",
          flush=True)
    params = d / "params.yaml"
    write_params(params, npz, epochs)
    exe = _edgeqat()
    results = {}
    print("  prepare ...", flush=True)
    results["prepare"] = measure(
        [*exe, "stage", "prepare", "--params", str(params), "--out", str(d / "prepared"),
         "--metrics", str(d / "prepare.json")], d / "prepare.log")
    print(f"  prepare: peak {results['prepare'][0]:.0f} MiB, {results['prepare'][1]:.1f}s", flush=True)
    npz.unlink()  # the prepared shards are all train needs
    print("  train ...", flush=True)
    results["train"] = measure(
        [*exe, "stage", "train", "--params", str(params), "--data", str(d / "prepared"),
         "--out", str(d / "models" / "fp32.keras"), "--metrics", str(d / "train.json"),
         "--history", str(d / "train_history.csv")], d / "train.log")
    print(f"  train: peak {results['train'][0]:.0f} MiB, {results['train'][1]:.1f}s", flush=True)
    return results


def table(n: int, small: dict, large: dict, epochs: int, work: Path) -> tuple[str, bool]:
    ok = True
    rows = [
        "| stage | images | float32 decoded | peak RSS (MiB) | wall (s) | ratio 10N/N | within 1.5x |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for stage in ("prepare", "train"):
        ratio = large[stage][0] / small[stage][0]
        passed = ratio <= LIMIT
        ok &= passed
        for count, res, last in ((n, small, False), (10 * n, large, True)):
            gb = float32_bytes(count) / 1e9
            rows.append(
                f"| {stage} | {count:,} | {gb:.2f} GB | {res[stage][0]:.0f} | {res[stage][1]:.1f} | "
                + (f"{ratio:.2f} | {'pass' if passed else 'FAIL'} |" if last else "| |")
            )
    acc = ""
    for count in (n, 10 * n):
        m = work / f"n{count}" / "train.json"
        if m.is_file():
            acc += f"- train test accuracy at {count:,} images ({epochs} epoch(s)): {json.loads(m.read_text())['test_accuracy']:.3f}\n"
    text = (
        "# Memory vs data size\n\n"
        f"Criterion: peak memory at 10N images (>= 2 GB of float32) within {LIMIT}x of the peak at N.\n\n"
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}\n"
        f"- machine: {machine()}\n"
        f"- data: synthetic {SIZE}x{SIZE}x{CHANNELS} uint8 images, {CLASSES} classes, `.npz` source; "
        f"N = {n:,}, 10N = {10 * n:,}\n"
        f"- peak = `ru_maxrss` of the `edgeqat stage ...` process, each stage in a fresh process; "
        f"train: {epochs} epoch(s), default batch size and shuffle buffer\n"
        f"{acc}\n" + "\n".join(rows) + "\n\n"
        f"Result: {'PASS' if ok else 'FAIL'}\n"
    )
    return text, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4400, help="N; the large run uses 10N images")
    ap.add_argument("--workdir", type=Path, default=Path("bench/work/memory"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/memory_results.md"))
    ap.add_argument("--keep", action="store_true", help="keep the generated data and prepared shards")
    args = ap.parse_args(argv)
    if args.n < 50:
        ap.error("--n must be at least 50 (every class needs images in every split)")

    print(f"N = {args.n:,} images: {float32_bytes(args.n) / 1e9:.3f} GB as float32")
    print(f"10N = {10 * args.n:,} images: {float32_bytes(10 * args.n) / 1e9:.3f} GB as float32 "
          f"({10 * args.n:,} x {SIZE}x{SIZE}x{CHANNELS} x 4 bytes = {float32_bytes(10 * args.n):,} bytes)")
    if float32_bytes(10 * args.n) < 2e9:
        print("  (below the 2 GB of the acceptance criterion: a smoke test only; with N under "
              "prepare.shard_size (1024) prepare's ratio measures its shard buffer filling up)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = {}
        for count in (args.n, 10 * args.n):
            print(f"{count:,} images:", flush=True)
            results[count] = run_size(args.workdir, count, args.epochs)
        text, ok = table(args.n, results[args.n], results[10 * args.n], args.epochs, args.workdir)
    finally:
        if not args.keep:
            for count in (args.n, 10 * args.n):
                for sub in ("raw.npz", "raw.npz.part", "prepared", "models"):
                    p = args.workdir / f"n{count}" / sub
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    elif p.exists():
                        p.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print()
    print(text)
    print(f"written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
