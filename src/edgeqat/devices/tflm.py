"""Running a .tflite in TensorFlow Lite Micro on the host (PyPI ``tflite-micro``).

TFLM reports the arena it allocated, and why a model fails to load (a missing op, a
hybrid or float16 kernel it lacks, an arena too small), only through the C++ side's
standard streams; the Python side sees a generic "failed to allocate tensors". So every
call here captures file descriptors 1 and 2 and parses what the allocator printed.

The host build uses TFLM's *reference* kernels: the arena is the same with CMSIS-NN or
ESP-NN kernels up to their scratch buffers, so arena figures for those targets are
labelled estimates by the caller.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeqat.errors import ModelError

# Large enough for any model an MCU could hold; TFLM takes only what the plan needs from it.
PROBE_ARENA_BYTES = 64 * 1024 * 1024

_ARENA = re.compile(r"Arena allocation total (\d+) bytes")
_MISSING = re.compile(r"Requested: (\d+), available (\d+), missing: (\d+)")
_NO_OP = re.compile(r"(?:Didn't find op for builtin opcode|Failed to get registration from op code)\s*'?([A-Z0-9_]+)'?")


@contextmanager
def captured_native_output() -> Iterator[list[str]]:
    """Collect what native code writes to fds 1 and 2 while the block runs."""
    box: list[str] = []
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1), os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
            tmp.seek(0)
            box.append(tmp.read().decode(errors="replace"))


@dataclass
class TflmRun:
    loaded: bool
    arena_bytes: int | None = None  # what TFLM's recording allocator used
    error: str | None = None  # the C++ side's own words, first lines
    unsupported_ops: list[str] = field(default_factory=list)
    preds: np.ndarray | None = None
    outputs: np.ndarray | None = None
    latency_ms: list[float] = field(default_factory=list)


def _runtime() -> Any:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise ModelError("TFLite Micro is not installed: pip install tflite-micro") from None
    return runtime


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    q = detail["quantization_parameters"]
    scale, zp = float(q["scales"][0]), int(q["zero_points"][0])
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32)
    q = detail["quantization_parameters"]
    return (y.astype(np.float32) - int(q["zero_points"][0])) * float(q["scales"][0])


def run_tflm(model: str | Path, images: np.ndarray | None = None, arena_size: int = PROBE_ARENA_BYTES,
             timed_runs: int = 0) -> TflmRun:
    """Load ``model`` in TFLM, run ``images`` (normalised float, N×H×W×C) one at a time,
    and report the arena used, the predictions and raw outputs, or why it would not load."""
    runtime = _runtime()
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: .tflite file not found")
    run = TflmRun(loaded=False)
    with captured_native_output() as text:
        try:
            it = runtime.Interpreter.from_file(str(path), arena_size=arena_size)
            inp, out = it.get_input_details(0), it.get_output_details(0)
            shape = [int(d) for d in inp["shape"]]
            first = images[:1] if images is not None and len(images) else np.zeros(shape, np.float32)
            it.set_input(_quantize(first.reshape(shape), inp), 0)
            it.invoke()
            it.print_allocations()
            run.loaded = True
        except (RuntimeError, ValueError) as err:
            run.error = str(err)
    log_text = text[0] if text else ""
    m = _ARENA.search(log_text)
    if m:
        run.arena_bytes = int(m.group(1))
    run.unsupported_ops = sorted(set(_NO_OP.findall(log_text)))
    if not run.loaded:
        detail = [ln.strip() for ln in log_text.splitlines() if ln.strip() and "RecordingMicroAllocator" not in ln]
        run.error = "; ".join(detail[:3]) or run.error
        if _MISSING.search(log_text):
            run.error = f"the model does not fit a {arena_size:,}-byte arena ({run.error})"
        return run
    if images is not None and len(images):
        outs = []
        for x in images:
            it.set_input(_quantize(x.reshape(shape), inp), 0)
            it.invoke()
            outs.append(_dequantize(np.array(it.get_output(0)), out).reshape(-1))
        run.outputs = np.stack(outs)
        run.preds = np.argmax(run.outputs, axis=-1)
        for i in range(timed_runs):
            it.set_input(_quantize(images[i % len(images)].reshape(shape), inp), 0)
            t = time.perf_counter()
            it.invoke()
            run.latency_ms.append((time.perf_counter() - t) * 1000.0)
    return run

