"""Running a .tflite through LiteRT (``ai_edge_litert``), falling back to ``tflite_runtime``.

The model card says how raw uint8 pixels become the model's input: normalise with the
card's mean/std, then, for an integer input, quantize with the input scale/zero point.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.errors import ModelError


def interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # a device image may only have the legacy runtime
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ModelError("no TFLite runtime: install ai-edge-litert (or tflite-runtime on a device)") from None
    return Interpreter


def _resolver(xnnpack: bool) -> dict[str, Any]:
    if xnnpack:
        return {}
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        from tflite_runtime.interpreter import OpResolverType
    # LiteRT's own kernels only: what a device without the XNNPACK delegate runs.
    return {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def _quiet(xnnpack: bool) -> Any:
    """LiteRT says it created an XNNPACK delegate, once per process: the first such load goes quiet."""
    global _loaded_once
    if _loaded_once or not xnnpack:
        return contextlib.nullcontext()
    _loaded_once = True
    try:
        from edgeqat.tf_compat import quiet_native
    except ImportError:  # the registered model's code ships without it
        return contextlib.nullcontext()
    return quiet_native()


_loaded_once = False


def load_interpreter(model: str | Path | bytes, num_threads: int = 1, xnnpack: bool = True,
                     allocate: bool = True) -> Any:
    """``allocate`` False: the tensors as the file stores them, for reading (a kernel's or
    delegate's preparation may rewrite them: XNNPACK expands a Dense kernel's one scale
    into one per output channel)."""
    Interpreter = interpreter_class()
    try:
        if not isinstance(model, (bytes, bytearray)) and not Path(model).is_file():
            raise ModelError(f"{model}: .tflite file not found")
        with _quiet(xnnpack):
            if isinstance(model, (bytes, bytearray)):
                it = Interpreter(model_content=bytes(model), num_threads=num_threads, **_resolver(xnnpack))
            else:
                it = Interpreter(model_path=str(model), num_threads=num_threads, **_resolver(xnnpack))
            if allocate:
                it.allocate_tensors()
    except ModelError:
        raise
    except (ValueError, RuntimeError) as err:
        where = "model bytes" if isinstance(model, (bytes, bytearray)) else str(model)
        raise ModelError(f"{where}: not a loadable TFLite model: {err}") from None
    return it


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype in (np.float32, np.float16):
        return x.astype(dtype)
    scale, zp = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] in (np.float32, np.float16):
        return y.astype(np.float32)
    scale, zp = detail["quantization"]
    return (y.astype(np.float32) - zp) * scale


class TFLiteClassifier:
    """One interpreter, fed one normalised image at a time (the batch-1 edge case)."""

    def __init__(self, model: str | Path | bytes, num_threads: int = 1, xnnpack: bool = True) -> None:
        self.it = load_interpreter(model, num_threads, xnnpack)
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Float logits/probabilities for one normalised image (H, W, C)."""
        self.it.set_tensor(self.inp["index"], quantize_input(x[None], self.inp))
        self.it.invoke()
        return dequantize_output(self.it.get_tensor(self.out["index"]), self.out)[0]

    def timed_invoke(self, x: np.ndarray) -> float:
        """Milliseconds of ``invoke()`` alone, for an already-normalised image."""
        self.it.set_tensor(self.inp["index"], quantize_input(x[None], self.inp))
        t = time.perf_counter()
        self.it.invoke()
        return (time.perf_counter() - t) * 1000.0


def tensor_summary(detail: dict) -> dict[str, Any]:
    scale, zp = detail["quantization"]
    return {
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [int(d) for d in detail["shape"]],
        "scale": float(scale),
        "zero_point": int(zp),
    }


def is_integer_only(model: str | Path | bytes) -> bool:
    """True when every op input/output tensor the interpreter sees is an integer type
    (what Edge TPU and microcontrollers need)."""
    it = load_interpreter(model)
    for t in it.get_tensor_details():
        if np.dtype(t["dtype"]).kind == "f":
            return False
    return True
