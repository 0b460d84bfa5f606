"""Child process of :func:`edgeqat.devices.tflm.run_tflm`: one TFLite Micro session.

``python -m edgeqat.devices.tflm_worker DIR`` reads ``DIR/request.json`` (model, arena
size, timed runs) and ``DIR/images.npy`` (normalised float images, optional), and writes
``DIR/result.json`` plus ``DIR/outputs_raw.npy``. TFLM aborts the whole process on some
models (a failed assertion in a kernel or the allocator), so it runs here, never in the
caller; the parent reads the C++ side's output from this process's fds 1 and 2.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def _unbuffer_native_stdio() -> None:
    # The C++ side prints through C stdio, fully buffered into a pipe: an abort would
    # lose exactly the last lines that say why. Unbuffered, every line reaches the parent.
    try:
        libc = ctypes.CDLL(None)
        for name in ("stdout", "stderr"):
            libc.setvbuf(ctypes.c_void_p.in_dll(libc, name), None, 2, 0)  # 2 = _IONBF
    except (OSError, ValueError, AttributeError):
        pass


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    q = detail["quantization_parameters"]
    scale, zp = float(q["scales"][0]), int(q["zero_points"][0])
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def main(folder: str) -> int:
    _unbuffer_native_stdio()
    faulthandler.enable()  # on an abort, stderr names the Python call TFLM died in
    d = Path(folder)
    req = json.loads((d / "request.json").read_text())
    images = np.load(d / "images.npy") if (d / "images.npy").is_file() else None
    res: dict = {"loaded": False, "error": None, "latency_ms": []}

    def done() -> int:
        (d / "result.json").write_text(json.dumps(res))
        return 0

    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        res["error"] = "TFLite Micro is not installed: pip install tflite-micro"
        return done()
    try:
        it = runtime.Interpreter.from_file(req["model"], arena_size=int(req["arena_size"]))
        inp, out = it.get_input_details(0), it.get_output_details(0)
        shape = [int(v) for v in inp["shape"]]
        first = images[:1] if images is not None and len(images) else np.zeros(shape, np.float32)
        it.set_input(_quantize(first.reshape(shape), inp), 0)
        it.invoke()
        it.print_allocations()
        res["loaded"] = True
        q = out["quantization_parameters"]
        res["output"] = {"dtype": np.dtype(out["dtype"]).name,
                         "scale": float(q["scales"][0]) if len(q["scales"]) else 0.0,
                         "zero_point": int(q["zero_points"][0]) if len(q["zero_points"]) else 0}
        if images is not None and len(images):
            outs = []
            for x in images:
                it.set_input(_quantize(x.reshape(shape), inp), 0)
                it.invoke()
                outs.append(np.array(it.get_output(0)).reshape(-1).copy())
            np.save(d / "outputs_raw.npy", np.stack(outs))
            for i in range(int(req.get("timed_runs", 0))):
                it.set_input(_quantize(images[i % len(images)].reshape(shape), inp), 0)
                t = time.perf_counter()
                it.invoke()
                res["latency_ms"].append((time.perf_counter() - t) * 1000.0)
    except Exception as err:  # noqa: BLE001 -- whatever TFLM's Python side raises, the parent gets its words
        res["error"] = f"{type(err).__name__}: {err}" if not isinstance(err, RuntimeError) else str(err)
        res["traceback"] = traceback.format_exc(limit=3)
    sys.stdout.flush()
    return done()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
