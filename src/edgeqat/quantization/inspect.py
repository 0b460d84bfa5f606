"""What a converted .tflite really contains, read from the flatbuffer through LiteRT.

- :func:`weight_sparsity`: the fraction of zero weights in the constant filter tensors of
  CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / TRANSPOSE_CONV ops (following a
  DEQUANTIZE back to its stored int8/float16 constant), i.e. the sparsity that survived
  conversion, not the sparsity the Keras model had.
- :func:`weight_values`: distinct stored values per CONV_2D / FULLY_CONNECTED filter tensor
  and per output channel: what weight clustering leaves in the file (a clustered kernel
  holds at most ``cluster.number_of_clusters`` values per output channel).
- :func:`op_dtypes`: every op with its input/output tensor dtypes, to check which layers
  are float, int8 or int16 in the file that ships.
- :func:`card_facts`: the model card's per-variant facts, never copied from the configuration
  that asked for them: ``weights`` (dtype, quantization granularity, scales and zero points
  of every stored filter tensor), ``activations`` (the dtypes the compute ops produce;
  QUANTIZE / DEQUANTIZE left out, they convert at the I/O boundary or expand stored weights),
  ``input`` / ``output`` (dtype, shape, scale, zero point) and ``outputs``: ``probabilities``
  when the output tensor comes from a SOFTMAX (through QUANTIZE / DEQUANTIZE / RESHAPE), else
  ``logits``, which is what a caller must know to report probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.quantization.runtime import load_interpreter

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE")
BOUNDARY = ("QUANTIZE", "DEQUANTIZE")


def _graph(model: str | Path | bytes) -> tuple[Any, list[dict], dict[int, dict]]:
    # Before any kernel or delegate prepares the graph: the tensors as the file stores them.
    it = load_interpreter(model, xnnpack=False, allocate=False)
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
    return [(name, arr) for name, _, arr, _ in _weights(model)]


def _weights(model: str | Path | bytes) -> list[tuple[str, str, np.ndarray, int]]:
    """(tensor name, op, stored values, output-channel axis) of every constant filter tensor."""
    graph = _graph(model)
    it, arrays = graph[0], []
    for op, t in _weight_ops(graph):
        try:
            arr = np.array(it.get_tensor(t["index"]))
        except ValueError:
            continue
        q = t["quantization_parameters"]
        zp = q["zero_points"]
        if np.dtype(arr.dtype).kind == "i" and zp.size:
            # per-channel zero points lie along the quantized dimension; int8 weights use 0
            zero = zp.reshape(-1)[0] if np.all(zp == zp.reshape(-1)[0]) else None
            arr = arr.astype(np.int32) - (zero if zero is not None else 0)
        # output channels: axis 0 of CONV_2D (OHWI) and FULLY_CONNECTED (OI), 3 of DEPTHWISE (1HWO)
        axis = int(q["quantized_dimension"]) if q["scales"].size > 1 else (3 if op["op_name"] == "DEPTHWISE_CONV_2D" else 0)
        arrays.append((t["name"], op["op_name"], arr, axis))
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


CLUSTERED_OPS = ("CONV_2D", "FULLY_CONNECTED")  # Conv2D and Dense: the kernels tfmot clusters


def weight_values(model: str | Path | bytes) -> dict[str, Any]:
    """Distinct stored values of every CONV_2D / FULLY_CONNECTED filter tensor, in the whole
    tensor and in its fullest output channel; ``max_per_tensor`` and ``max_per_channel`` over
    them all."""
    per_tensor = {}
    for name, op, arr, axis in _weights(model):
        if op in CLUSTERED_OPS:
            rows = np.moveaxis(arr, axis, 0).reshape(arr.shape[axis], -1)
            per_tensor[name] = {"op": op, "tensor": int(np.unique(arr).size),
                                "per_channel": int(max(np.unique(r).size for r in rows))}
    return {"max_per_channel": max((v["per_channel"] for v in per_tensor.values()), default=0),
            "max_per_tensor": max((v["tensor"] for v in per_tensor.values()), default=0),
            "per_tensor": per_tensor}


def filter_counts(model: str | Path | bytes) -> list[int]:
    """Output channels of every CONV_2D / FULLY_CONNECTED weight tensor, in op order."""
    _, ops, tensors = _graph(model)
    counts = []
    for op in ops:
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED") and len(op["inputs"]) >= 2:
            counts.append(int(tensors[op["inputs"][1]]["shape"][0]))
    return counts


def _weight_tensor(op: dict, producer: dict[int, dict], tensors: dict[int, dict]) -> dict | None:
    """The stored constant behind a weighted op's filter input (None: computed at run time)."""
    if len(op["inputs"]) < 2 or op["inputs"][1] < 0:
        return None
    idx = op["inputs"][1]
    if idx in producer and producer[idx]["op_name"] == "DEQUANTIZE":  # float16 / hybrid storage
        idx = producer[idx]["inputs"][0]
    return None if idx in producer else tensors.get(idx)


def _granularity(scales: np.ndarray) -> str:
    return "none" if scales.size == 0 else "per-tensor" if scales.size == 1 else "per-channel"


def _weight_ops(graph: tuple[Any, list[dict], dict[int, dict]]) -> Any:
    """(op, its stored filter tensor) for every weighted op whose filter is a constant."""
    _, ops, tensors = graph
    producer = {o: op for op in ops for o in op["outputs"]}
    for op in ops:
        t = _weight_tensor(op, producer, tensors) if op["op_name"] in WEIGHTED_OPS else None
        if t is not None:
            yield op, t


def _weight_rows(graph: tuple[Any, list[dict], dict[int, dict]]) -> list[dict[str, Any]]:
    rows = []
    for op, t in _weight_ops(graph):
        q = t["quantization_parameters"]
        scales, zps = np.asarray(q["scales"]), np.asarray(q["zero_points"])
        row: dict[str, Any] = {"op": op["op_name"], "tensor": t["name"], "dtype": np.dtype(t["dtype"]).name,
                               "granularity": _granularity(scales), "scales": int(scales.size)}
        if scales.size:
            row.update({"scale_min": float(scales.min()), "scale_max": float(scales.max()),
                        "zero_points": sorted({int(z) for z in zps.reshape(-1)})})
            if scales.size > 1:
                row["quantized_dimension"] = int(q["quantized_dimension"])
        rows.append(row)
    return rows


def weight_tensors(model: str | Path | bytes) -> list[dict[str, Any]]:
    """One row per weighted op: its filter tensor's dtype, granularity, scales and zero points."""
    return _weight_rows(_graph(model))


def _summary(rows: list[dict[str, Any]]) -> str:
    kinds = {r["granularity"] for r in rows if r["granularity"] != "none"}
    if not kinds:
        return "none"  # float weights: no scales at all
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _activation_dtypes(graph: tuple[Any, list[dict], dict[int, dict]]) -> list[str]:
    _, ops, tensors = graph
    out: set[str] = set()
    for op in ops:
        if op["op_name"] not in BOUNDARY:
            out |= {np.dtype(tensors[i]["dtype"]).name for i in op["outputs"] if i in tensors}
    return sorted(out)


def _output_kind(graph: tuple[Any, list[dict], dict[int, dict]]) -> str:
    it, ops, _ = graph
    producer = {o: op for op in ops for o in op["outputs"]}
    idx = it.get_output_details()[0]["index"]
    while idx in producer and producer[idx]["op_name"] in PASS_THROUGH:
        idx = producer[idx]["inputs"][0]
    return "probabilities" if idx in producer and producer[idx]["op_name"] == "SOFTMAX" else "logits"


def card_facts(model: str | Path | bytes) -> dict[str, Any]:
    """The model card's per-variant facts about ``model``, all read from the file."""
    from edgeqat.quantization.runtime import tensor_summary

    graph = _graph(model)
    it, rows = graph[0], _weight_rows(graph)
    return {
        "weights": {"dtypes": sorted({r["dtype"] for r in rows}), "granularity": _summary(rows), "tensors": rows},
        "activations": {"dtypes": _activation_dtypes(graph)},
        "input": tensor_summary(it.get_input_details()[0]),
        "output": tensor_summary(it.get_output_details()[0]),
        "outputs": _output_kind(graph),
    }


def not_per_tensor(model: str | Path | bytes) -> list[dict[str, Any]]:
    """The quantized weight tensors that hold more than one scale."""
    return [r for r in weight_tensors(model) if r["granularity"] == "per-channel"]
