"""Time a .tflite on the device it runs on: STANDALONE (numpy + LiteRT or tflite_runtime only).

Copied to a scratch folder on the device (or the host) by :mod:`edgeqat.devices.runtimes.measured`
and run by that device's own Python, so it must never import edgeqat or TensorFlow.

    python device_runner.py SPEC.json

SPEC.json: ``model`` and ``inputs`` (paths; inputs already in the model input's dtype, one
sample per row), ``threads``,
``xnnpack``, ``warmup``, ``runs``, ``budget_s`` (time allowed for the warm-up and timed
runs), ``arch`` (accepted ``platform.machine()`` values; empty: any).

Prints one JSON line on stdout: the measurement (with the raw output of every input as a
base64 .npy), or ``{"error": CHECK, "message": ...}``
where CHECK names what could not run (``arch``, ``runtime``, ``model``, ``timeout``).
Progress goes to stderr (``edgeqat-runner: <phase>``) so a caller that had to kill the run
can tell how far it got.
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import sys
import time


def _say(phase: str) -> None:
    print(f"edgeqat-runner: {phase}", file=sys.stderr, flush=True)


def _fail(check: str, message: str) -> int:
    print(json.dumps({"error": check, "message": message}), flush=True)
    return 3


def _too_slow(budget: float, first_ms: float, total: int) -> int:
    what = "one inference" if first_ms / 1000.0 > budget else f"the {total} inferences"
    return _fail("timeout", f"connect.timeout_s ({budget:g} s) is shorter than {what}: one took {first_ms:.3g} ms, "
                            f"so {total} need about {total * first_ms / 1000.0:.2g} s")


def _runtime():
    """(Interpreter class, OpResolverType or None, runtime name, version) of what the device has."""
    for name in ("ai_edge_litert", "tflite_runtime"):
        try:
            mod = __import__(f"{name}.interpreter", fromlist=["Interpreter"])
        except ImportError:
            continue
        top = sys.modules[name]
        return mod.Interpreter, getattr(mod, "OpResolverType", None), name, str(getattr(top, "__version__", "unknown"))
    return None


def _rss_now() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss() -> int | None:
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kb) if sys.platform == "darwin" else int(kb) * 1024  # macOS reports bytes, Linux KiB


def _cpu() -> dict:
    """What the device says it is: /proc/cpuinfo's model name (x86) or CPU part and board (ARM)."""
    info = {"machine": platform.machine(), "cores": os.cpu_count(), "system": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "Hardware", "CPU part", "CPU implementer") and value:
            info.setdefault({"model name": "cpu", "Model": "board"}.get(key, key.lower().replace(" ", "_")), value)
    if "cpu" not in info and "cpu_part" in info:  # ARM: the core from its part number
        arm = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
               "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
               "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78"}
        info["cpu"] = arm.get(info["cpu_part"].lower(), f"ARM part {info['cpu_part']}")
    info.setdefault("cpu", platform.processor() or info["machine"])
    return info


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        spec = json.load(f)
    cpu = _cpu()
    arch = spec.get("arch") or []
    if arch and cpu["machine"] not in arch:
        return _fail("arch", f"the device is {cpu['machine']}, the profile expects {' or '.join(arch)}")
    try:
        import numpy as np
    except ImportError:
        return _fail("runtime", f"numpy is missing on the device (Python {platform.python_version()} at {sys.executable})")
    found = _runtime()
    if found is None:
        return _fail("runtime", f"no LiteRT on the device: neither ai_edge_litert nor tflite_runtime imports in "
                                f"{sys.executable} (pip install ai-edge-litert, or tflite-runtime)")
    Interpreter, resolver, runtime, version = found
    _say("runtime ready")
    kwargs = {}
    if not spec.get("xnnpack", True) and resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    rss_before = _rss_now()
    t0 = time.perf_counter()
    try:
        it = Interpreter(model_path=spec["model"], num_threads=int(spec.get("threads", 1)), **kwargs)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        return _fail("model", f"{runtime} {version} could not load the model: {str(err).splitlines()[0] if str(err) else err}")
    load_ms = (time.perf_counter() - t0) * 1000.0
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.load(spec["inputs"])
    if x.dtype != inp["dtype"]:
        return _fail("model", f"inputs are {x.dtype}, the model input is {np.dtype(inp['dtype']).name}")
    _say("model loaded")

    budget = float(spec.get("budget_s", 60.0))
    warmup, runs = int(spec.get("warmup", 5)), int(spec.get("runs", 50))
    start = time.perf_counter()
    outputs, first_ms = [], None
    for i in range(x.shape[0]):  # every sample once: the outputs compared with the host's
        it.set_tensor(inp["index"], x[i:i + 1])
        t = time.perf_counter()
        it.invoke()
        if first_ms is None:
            first_ms = (time.perf_counter() - t) * 1000.0
            _say("first inference done")
        outputs.append(it.get_tensor(out["index"])[0].copy())
        if time.perf_counter() - start > budget:
            return _too_slow(budget, first_ms, x.shape[0] + warmup + runs)
    latency_ms = []
    for k in range(warmup + runs):
        it.set_tensor(inp["index"], x[k % x.shape[0]:k % x.shape[0] + 1])
        t = time.perf_counter()
        it.invoke()
        ms = (time.perf_counter() - t) * 1000.0
        if k >= warmup:
            latency_ms.append(ms)
        if time.perf_counter() - start > budget and k < warmup + runs - 1:
            return _too_slow(budget, first_ms, x.shape[0] + warmup + runs)
    buf = io.BytesIO()
    np.save(buf, np.stack(outputs) if outputs else np.zeros((0, *out["shape"][1:]), out["dtype"]))
    print(json.dumps({
        "runtime": runtime, "runtime_version": version, "numpy_version": np.__version__,
        "python": platform.python_version(), "threads": int(spec.get("threads", 1)), "xnnpack": bool(spec.get("xnnpack", True)),
        "load_ms": load_ms, "first_ms": first_ms, "latency_ms": latency_ms, "warmup": warmup,
        "rss_before_load_bytes": rss_before, "peak_rss_bytes": _peak_rss(), **cpu,
        "outputs_npy": base64.b64encode(buf.getvalue()).decode("ascii"),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
