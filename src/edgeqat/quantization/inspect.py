"""What a converted .tflite really contains, read from the flatbuffer through LiteRT.

- :func:`weight_sparsity`: the fraction of zero weights in the constant filter tensors of
  CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / TRANSPOSE_CONV ops (following a
  DEQUANTIZE back to its stored int8/float16 constant), i.e. the sparsity that survived
  conversion, not the sparsity the Keras model had.
- :func:`op_dtypes`: every op with its input/output tensor dtypes, to check which layers
  are float, int8 or int16 in the file that ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.quantization.runtime import load_interpreter

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def _graph(model: str | Path | bytes) -> tuple[Any, list[dict], dict[int, dict]]:
    it = load_interpreter(model)
    ops = it._get_ops_details()  # public enough: used by LiteRT's own analyzer
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    return it, ops, tensors


def op_dtypes(model: str | Path | bytes) -> list[dict[str, Any]]:
    """[{op, inputs: [dtype...], outputs: [dtype...], output_name}] in execution order."""
    _, ops, tensors = _graph(model)
    out = []
    for op in ops:
        ins = [np.dtype(tensors[i]["dtype"]).name for i in op["inputs"] if i >= 0 and i in tensors]
        outs = [np.dtype(tensors[i]["dtype"]).name for i in op["outputs"] if i in tensors]
        name = tensors[op["outputs"][0]]["name"] if op["outputs"] and op["outputs"][0] in tensors else ""
        out.append({"op": op["op_name"], "inputs": ins, "outputs": outs, "output_name": name})
    return out


def _weight_arrays(model: str | Path | bytes) -> list[tuple[str, np.ndarray]]:
    it, ops, tensors = _graph(model)
    producer = {o: op for op in ops for o in op["outputs"]}
    arrays = []
    for op in ops:
        if op["op_name"] not in WEIGHTED_OPS or len(op["inputs"]) < 2:
            continue
        idx = op["inputs"][1]
        if idx in producer and producer[idx]["op_name"] == "DEQUANTIZE":  # float16 / hybrid storage
            idx = producer[idx]["inputs"][0]
        if idx in producer:  # computed at run time, not a stored constant
            continue
        try:
            arr = np.array(it.get_tensor(idx))
        except ValueError:
            continue
        zp = tensors[idx]["quantization_parameters"]["zero_points"]
        if np.dtype(arr.dtype).kind == "i" and zp.size:
            # per-channel zero points lie along the quantized dimension; int8 weights use 0
            zero = zp.reshape(-1)[0] if np.all(zp == zp.reshape(-1)[0]) else None
            arr = arr.astype(np.int32) - (zero if zero is not None else 0)
        arrays.append((tensors[idx]["name"], arr))
    return arrays


def weight_sparsity(model: str | Path | bytes) -> dict[str, Any]:
    """Overall and per-tensor fraction of exactly-zero stored weights."""
    arrays = _weight_arrays(model)
    zeros = sum(int(np.count_nonzero(a == 0)) for _, a in arrays)
    total = sum(int(a.size) for _, a in arrays)
    return {
        "sparsity": zeros / total if total else 0.0,
        "weights": total,
        "per_tensor": {name: float(np.mean(a == 0)) for name, a in arrays},
    }


def filter_counts(model: str | Path | bytes) -> list[int]:
    """Output channels of every CONV_2D / FULLY_CONNECTED weight tensor, in op order."""
    _, ops, tensors = _graph(model)
    counts = []
    for op in ops:
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED") and len(op["inputs"]) >= 2:
            counts.append(int(tensors[op["inputs"][1]]["shape"][0]))
    return counts
