"""What a .tflite asks of a device: its ops, their dtypes, and the multiply-accumulates per op class.

MACs are counted from the flatbuffer's tensor shapes (batch 1), the same way for a user's
model and for the reference models behind the published latency table, so the speed
model is fitted and applied on one scale. Classes, which run at very different speeds per
MAC on every target: ``dense`` (CONV_2D, TRANSPOSE_CONV: each weight reused across the
image, compute-bound), ``depthwise`` (DEPTHWISE_CONV_2D: little reuse), ``fc``
(FULLY_CONNECTED, BATCH_MATMUL: each weight read once per inference, memory-bound), and
``other`` (output elements of every remaining op: pooling, adds, activations, reshapes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.quantization.runtime import load_interpreter


@dataclass
class Workload:
    ops: Counter = field(default_factory=Counter)  # op name -> count
    macs: dict[str, int] = field(default_factory=lambda: {"dense": 0, "depthwise": 0, "fc": 0, "other": 0})
    float_ops: list[str] = field(default_factory=list)  # ops computing in float (not just edge I/O)
    int16_ops: list[str] = field(default_factory=list)  # ops with int16 tensors (16x8 quantization)
    compute_dtype: str = "int8"  # int8 | int16 | fp32: the dtype the heavy ops compute in
    # Largest sum over one op of its activation inputs and outputs, in bytes: both live in the
    # arena while the op runs, so no memory plan can use less (a lower bound for TFLM's arena).
    peak_op_activation_bytes: int = 0
    # Every activation tensor (the inputs and every op's output) at once: what an interpreter
    # without arena reuse holds, so an upper bound of LiteRT's arena, from the model alone.
    activation_bytes: int = 0
    peak_op: str = ""

    @property
    def total_macs(self) -> int:
        return self.macs["dense"] + self.macs["depthwise"] + self.macs["fc"]

    def as_dict(self) -> dict[str, Any]:
        return {"ops": dict(sorted(self.ops.items())), "macs": dict(self.macs), "total_macs": self.total_macs,
                "float_ops": sorted(set(self.float_ops)), "int16_ops": sorted(set(self.int16_ops)),
                "compute_dtype": self.compute_dtype, "peak_op_activation_bytes": self.peak_op_activation_bytes,
                "activation_bytes": self.activation_bytes,
                "peak_op": self.peak_op}


_DENSE = ("CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL", "CONV_3D")
# Ops whose float tensors are only the model's edges (float I/O around an int8 body).
_EDGE_OPS = ("QUANTIZE", "DEQUANTIZE")


def _shape(t: dict) -> list[int]:
    return [int(d) for d in t["shape"]]


def _prod(xs: list[int]) -> int:
    return int(np.prod(xs)) if xs else 1


def analyze(model: str | Path | bytes) -> Workload:
    it = load_interpreter(model, xnnpack=False)  # the model's own ops, not XNNPACK's fused node
    ops = it._get_ops_details()  # the op list LiteRT's own analyzer reads
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    w = Workload()
    heavy_dtypes: Counter = Counter()
    # Activations: the model's inputs and every op's outputs (weights and biases are constants in flash).
    live = {d["index"] for d in it.get_input_details()} | {i for op in ops for i in op["outputs"]}
    w.activation_bytes = sum(_prod(_shape(tensors[i])) * np.dtype(tensors[i]["dtype"]).itemsize
                             for i in live if i in tensors)
    for op in ops:
        name = op["op_name"]
        if name == "DELEGATE":  # the XNNPACK node LiteRT adds over ops still listed one by one
            continue
        w.ops[name] += 1
        ins = [tensors[i] for i in op["inputs"] if i >= 0 and i in tensors]
        outs = [tensors[i] for i in op["outputs"] if i in tensors]
        out_shape = _shape(outs[0]) if outs else []
        act_bytes = sum(_prod(_shape(t)) * np.dtype(t["dtype"]).itemsize
                        for t in {t["index"]: t for t in ins + outs if t["index"] in live}.values())
        if act_bytes > w.peak_op_activation_bytes:
            w.peak_op_activation_bytes, w.peak_op = act_bytes, name
        if name in ("CONV_2D", "CONV_3D") and len(ins) >= 2:
            f = _shape(ins[1])  # [Cout, kh, kw, Cin]
            w.macs["dense"] += _prod(out_shape) * _prod(f[1:])
        elif name == "DEPTHWISE_CONV_2D" and len(ins) >= 2:
            f = _shape(ins[1])  # [1, kh, kw, C*mult]
            w.macs["depthwise"] += _prod(out_shape) * _prod(f[1:3])
        elif name == "FULLY_CONNECTED" and len(ins) >= 2:
            f = _shape(ins[1])  # [out, in]
            w.macs["fc"] += _prod(out_shape[:-1]) * _prod(f)
        elif name == "TRANSPOSE_CONV" and len(ins) >= 3:
            f = _shape(ins[1])  # [Cout, kh, kw, Cin], applied to every input pixel
            w.macs["dense"] += _prod(_shape(ins[2])[:-1]) * _prod(f)
        elif name == "BATCH_MATMUL" and len(ins) >= 2:
            a, b = _shape(ins[0]), _shape(ins[1])
            w.macs["fc"] += _prod(a) * (b[-1] if b else 1)
        else:
            w.macs["other"] += _prod(out_shape)
        dtypes = {np.dtype(t["dtype"]).name for t in ins + outs}
        if name in _DENSE or name == "DEPTHWISE_CONV_2D":
            act = np.dtype(ins[0]["dtype"]).name if ins else "float32"
            heavy_dtypes[act] += 1
        if name not in _EDGE_OPS and dtypes & {"float32", "float16"}:
            w.float_ops.append(name)
        if name not in _EDGE_OPS and "int16" in dtypes:
            w.int16_ops.append(name)
    if heavy_dtypes:
        top = heavy_dtypes.most_common(1)[0][0]
        w.compute_dtype = {"float32": "fp32", "float16": "fp32"}.get(top, top)
    return w
