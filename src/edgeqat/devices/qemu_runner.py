"""Run a .tflite on a batch, one sample at a time, and save the outputs and timings.

STANDALONE: executed by the emulated aarch64 Python (see ``edgeqat.devices.qemu``), which
has only numpy and LiteRT — so this file must never import edgeqat (or TensorFlow).

    python qemu_runner.py MODEL.tflite INPUTS.npy OUTPUTS.npy RESULT.json [THREADS]

INPUTS.npy holds the batch already in the model input's dtype (e.g. int8 after
quantization), shape (N, *input_shape[1:]). OUTPUTS.npy gets the raw output tensors stacked,
(N, *output_shape[1:]). RESULT.json: runtime, runtime_version, machine, threads,
latency_ms (invoke() alone, per sample).
"""

from __future__ import annotations

import json
import platform
import sys
import time

import numpy as np


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        import ai_edge_litert

        name = "ai_edge_litert"
        version = getattr(ai_edge_litert, "__version__", "unknown")
    except ImportError:
        from tflite_runtime.interpreter import Interpreter

        import tflite_runtime

        name = "tflite_runtime"
        version = getattr(tflite_runtime, "__version__", "unknown")
    return Interpreter, name, str(version)


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    model_path, inputs_path, outputs_path, result_path = argv[:4]
    threads = int(argv[4]) if len(argv) == 5 else 1

    Interpreter, runtime, version = _interpreter_class()
    it = Interpreter(model_path=model_path, num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]

    x = np.load(inputs_path)
    if x.dtype != inp["dtype"]:
        print(f"qemu_runner: inputs are {x.dtype}, the model input is {np.dtype(inp['dtype']).name}",
              file=sys.stderr)
        return 3
    outputs = []
    latency_ms = []
    for i in range(x.shape[0]):
        it.set_tensor(inp["index"], x[i : i + 1])
        t = time.perf_counter()
        it.invoke()
        latency_ms.append((time.perf_counter() - t) * 1000.0)
        outputs.append(it.get_tensor(out["index"])[0].copy())

    empty = np.zeros((0, *out["shape"][1:]), dtype=out["dtype"])
    np.save(outputs_path, np.stack(outputs) if outputs else empty)
    with open(result_path, "w") as f:
        json.dump({"runtime": runtime, "runtime_version": version, "machine": platform.machine(),
                   "python": platform.python_version(), "threads": threads,
                   "latency_ms": latency_ms}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
