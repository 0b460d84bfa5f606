"""Running a .tflite in TensorFlow Lite Micro on the host (PyPI ``tflite-micro``).

Every session runs in a child process (:mod:`edgeqat.devices.tflm_worker`) with a time
limit: TFLM aborts the whole process on some models (a failed ``TFLITE_CHECK`` in a
kernel's Prepare, e.g. a softmax whose input scale is too small), and that must become a
verdict, not a dead validate/recommend/pipeline. TFLM reports the arena it allocated, and
why a model fails to load (a missing op, a hybrid or float16 kernel it lacks, an arena too
small), only on the C++ side's standard streams; the child's fds 1 and 2 are captured and
parsed here.

The host build uses TFLM's *reference* kernels: the arena is the same with CMSIS-NN or
ESP-NN kernels up to their scratch buffers, so arena figures for those targets are
labelled estimates by the caller.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeqat.errors import ModelError

# Large enough for any model an MCU could hold; TFLM takes only what the plan needs from it.
PROBE_ARENA_BYTES = 64 * 1024 * 1024

_ARENA = re.compile(r"Arena allocation total (\d+) bytes")
_MISSING = re.compile(r"Requested: (\d+), available (\d+), missing: (\d+)")
_NO_OP = re.compile(r"(?:Didn't find op for builtin opcode|Failed to get registration from op code)\s*'?([A-Z0-9_]+)'?")


@dataclass
class TflmRun:
    loaded: bool
    arena_bytes: int | None = None  # what TFLM's recording allocator used
    error: str | None = None  # the C++ side's own words, first lines
    unsupported_ops: list[str] = field(default_factory=list)
    preds: np.ndarray | None = None
    outputs: np.ndarray | None = None
    latency_ms: list[float] = field(default_factory=list)
    outputs_raw: np.ndarray | None = None  # the output tensor as TFLM left it (int8 for int8 models)
    crashed: str | None = None  # signal name or "timeout" when the child died instead of answering
    native_output: str = ""


DEFAULT_TIMEOUT_S = 300.0


def _dequantize(raw: np.ndarray, out: dict) -> np.ndarray:
    if np.dtype(out["dtype"]).kind == "f" or not out["scale"]:
        return raw.astype(np.float32)
    return (raw.astype(np.float32) - out["zero_point"]) * out["scale"]


def _last_lines(text: str, n: int = 4) -> str:
    """The C++ side's last lines before the crash, and the Python call it died in (from the
    worker's faulthandler dump, innermost frame first)."""
    native, _, dump = text.partition("Fatal Python error:")
    lines = [ln.strip() for ln in native.splitlines() if ln.strip()]
    said = " | ".join(lines[-n:]) if lines else "none"
    frame = next((ln.strip() for ln in dump.splitlines() if ln.strip().startswith("File ")), None)
    return f"last native output: {said}" + (f"; died in {frame}" if frame else "")


def run_tflm(model: str | Path, images: np.ndarray | None = None, arena_size: int = PROBE_ARENA_BYTES,
             timed_runs: int = 0, timeout_s: float = DEFAULT_TIMEOUT_S) -> TflmRun:
    """Load ``model`` in TFLM in a child process, run ``images`` (normalised float, N×H×W×C)
    one at a time, and report the arena used, the predictions and outputs, or why it would
    not load -- including the child dying on a signal or running past ``timeout_s``."""
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: .tflite file not found")
    run = TflmRun(loaded=False)
    with tempfile.TemporaryDirectory(prefix="edgeqat-tflm-") as tmp:
        d = Path(tmp)
        (d / "request.json").write_text(json.dumps({"model": str(path.resolve()), "arena_size": int(arena_size),
                                                    "timed_runs": int(timed_runs)}))
        if images is not None and len(images):
            np.save(d / "images.npy", np.ascontiguousarray(images, dtype=np.float32))
        try:
            proc = subprocess.run([sys.executable, "-m", "edgeqat.devices.tflm_worker", str(d)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)
            text, rc = proc.stdout.decode(errors="replace"), proc.returncode
        except subprocess.TimeoutExpired as err:
            text, rc = (err.stdout or b"").decode(errors="replace"), None
        run.native_output = text
        result = json.loads((d / "result.json").read_text()) if (d / "result.json").is_file() else None
        if rc is None:
            run.crashed = "timeout"
            run.error = f"TFLite Micro ran past the {timeout_s:g} s time limit and was killed ({_last_lines(text)})"
            return run
        if result is None:
            run.crashed = signal.Signals(-rc).name if rc < 0 and -rc in signal.valid_signals() else f"exit {rc}"
            run.error = (f"TFLite Micro crashed: the process died on {run.crashed} "
                         f"({_last_lines(text)})")
            return run
        if result["loaded"] and (d / "outputs_raw.npy").is_file():
            run.outputs_raw = np.load(d / "outputs_raw.npy")
    run.loaded = bool(result["loaded"])
    run.latency_ms = list(result.get("latency_ms") or [])
    m = _ARENA.search(text)
    if m:
        run.arena_bytes = int(m.group(1))
    run.unsupported_ops = sorted(set(_NO_OP.findall(text)))
    if not run.loaded:
        detail = [ln.strip() for ln in text.splitlines() if ln.strip() and "RecordingMicroAllocator" not in ln]
        run.error = "; ".join(detail[:3]) or result.get("error")
        if _MISSING.search(text):
            run.error = f"the model does not fit a {arena_size:,}-byte arena ({run.error})"
        return run
    if run.outputs_raw is not None:
        run.outputs = _dequantize(run.outputs_raw, result["output"])
        run.preds = np.argmax(run.outputs, axis=-1)
    return run
