"""Arm Ethos-U NPUs through Arm's own compiler, Vela (PyPI ``ethos-u-vela``).

Vela compiles an int8 .tflite for one accelerator configuration (e.g. ``ethos-u55-128``),
system configuration (clocks and memory bandwidths, from Vela's ``Arm/vela.ini``) and
memory mode, and reports its performance model's figures: cycles and inference time,
SRAM and flash used, and which operators run on the NPU and which fall back to the
Cortex-M CPU. The compiled file replaces the NPU part of the graph by Vela's ``ethos-u``
custom op; that file is what an Ethos-U device runs.

Vela runs as a subprocess (``python -m ethosu.vela``) with a time limit and writes into a
temporary folder; nothing here imports it, so a missing install is a verdict, not a crash.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgeqat.errors import ModelError

INSTALL_HINT = "pip install ethos-u-vela==5.2.0"
NPU_CUSTOM_OP = b"ethos-u"  # the custom op code Vela writes for each NPU subgraph

_OPS = re.compile(r"^(CPU|NPU) operators = (\d+)", re.M)
_CPU_OP = re.compile(r"^\s+CPU: (\S+) = (.+?)(?: \(outputs .*\))?$", re.M)


@dataclass
class VelaResult:
    ran: bool
    error: Optional[str] = None
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    cycles: Optional[int] = None
    inference_ms: Optional[float] = None
    sram_bytes: Optional[int] = None
    flash_bytes: Optional[int] = None  # weights and other constants Vela places in flash
    dram_bytes: Optional[int] = None  # what the memory mode puts in DRAM (Ethos-U65 systems)
    weights_area: Optional[str] = None  # where the memory mode keeps the weights: "Off-chip Flash", "DRAM", ...
    encoded_weight_bytes: Optional[int] = None  # the weights after Vela's encoding (zero runs, palettes)...
    original_weight_bytes: Optional[int] = None  # ...and before it
    npu_ops: Optional[int] = None  # Vela's count (its own operators: a fused activation counts apart)
    cpu_ops: Optional[int] = None
    cpu_op_names: list[str] = field(default_factory=list)  # TFLite op names that fall back to the CPU
    tflite_ops: Optional[int] = None  # the model's TFLite operators...
    tflite_ops_on_cpu: Optional[int] = None  # ...and how many of them the compiled file leaves to the CPU
    per_layer: list[dict[str, Any]] = field(default_factory=list)
    compiled: Optional[bytes] = None  # the *_vela.tflite

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("ran", "error", "version", "config", "cycles", "inference_ms",
                                              "sram_bytes", "flash_bytes", "dram_bytes", "weights_area",
                                              "encoded_weight_bytes", "original_weight_bytes", "npu_ops", "cpu_ops", "cpu_op_names",
                                              "tflite_ops", "tflite_ops_on_cpu",
                                              "per_layer")}
        out["compiled_bytes"] = len(self.compiled) if self.compiled is not None else None
        return out


def compiled_ops(blob: bytes) -> list[str]:
    """The operators of a compiled file in order: ``ethos-u`` for each NPU subgraph, the
    TFLite name of each op left to the CPU (read with TFLM's flatbuffer schema)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    m = fb.Model.GetRootAsModel(blob, 0)
    codes = [m.OperatorCodes(i) for i in range(m.OperatorCodesLength())]
    out = []
    for s in range(m.SubgraphsLength()):
        g = m.Subgraphs(s)
        for i in range(g.OperatorsLength()):
            c = codes[g.Operators(i).OpcodeIndex()]
            code = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
            out.append(c.CustomCode().decode() if c.CustomCode() else names.get(code, str(code)))
    return out


def vela_version() -> Optional[str]:
    """The installed Vela's version, or None when it is not installed (or not importable here)."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    try:
        if importlib.util.find_spec("ethosu.vela") is None:
            return None
        return version("ethos-u-vela")
    except (ImportError, PackageNotFoundError):
        return None


def _tflite_name(vela_op: str, model_ops: set[str]) -> str:
    """Vela says ``DepthToSpace``; the model says ``DEPTH_TO_SPACE``."""
    key = vela_op.replace("_", "").upper()
    return next((op for op in sorted(model_ops) if op.replace("_", "") == key), vela_op)


def _num(v: str) -> Any:
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() else f


def compile_model(model: str | Path, cfg: Any, model_ops: dict[str, int] | None = None, timeout_s: Optional[float] = None) -> VelaResult:
    """Run Vela on ``model`` for the profile's ``vela`` block; a missing install, a compiler
    error or a timeout comes back as ``ran=False`` with the reason."""
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: .tflite file not found")
    model_ops = model_ops or {}
    config = {"accelerator_config": cfg.accelerator_config, "system_config": cfg.system_config,
              "memory_mode": cfg.memory_mode, "config_file": cfg.config_file, "optimise": cfg.optimise}
    ver = vela_version()
    if ver is None:
        return VelaResult(ran=False, config=config,
                          error=f"Vela (Arm's Ethos-U compiler) is not installed: {INSTALL_HINT}")
    timeout_s = cfg.timeout_s if timeout_s is None else timeout_s
    with tempfile.TemporaryDirectory(prefix="edgeqat-vela-") as tmp:
        src = Path(tmp) / "model.tflite"  # a fixed stem: Vela names its outputs after the input
        shutil.copyfile(path, src)
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "ethosu.vela", str(src), "--output-dir", str(out),
               "--accelerator-config", cfg.accelerator_config, "--system-config", cfg.system_config,
               "--memory-mode", cfg.memory_mode, "--config", cfg.config_file, "--optimise", cfg.optimise,
               "--verbose-performance", "--show-cpu-operations"]
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s, cwd=tmp)
        except subprocess.TimeoutExpired:
            return VelaResult(ran=False, version=ver, config=config,
                              error=f"Vela ran past the {timeout_s:g} s time limit and was killed")
        text = proc.stdout.decode(errors="replace")
        summary = next(out.glob("*_summary_*.csv"), None) if out.is_dir() else None
        compiled = out / "model_vela.tflite"
        if proc.returncode != 0 or summary is None or not compiled.is_file():
            tail = " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())[-600:]
            return VelaResult(ran=False, version=ver, config=config,
                              error=f"Vela failed (exit {proc.returncode}): {tail or 'no output'}")
        with summary.open(newline="") as f:
            row = next(csv.DictReader(f))
        per_layer_file = out / "model_per-layer.csv"
        per_layer = []
        if per_layer_file.is_file():
            with per_layer_file.open(newline="") as f:
                per_layer = [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]
        res = VelaResult(ran=True, version=ver, config=config, compiled=compiled.read_bytes(), per_layer=per_layer)
    res.cycles = int(float(row["cycles_total"]))
    res.inference_ms = float(row["inference_time"]) * 1000.0
    res.sram_bytes = int(round(float(row["sram_memory_used"]) * 1024))
    # Flash as Vela's memory mode places it: weights in on- or off-chip flash.
    res.flash_bytes = int(round((float(row["off_chip_flash_memory_used"]) + float(row["on_chip_flash_memory_used"])) * 1024))
    res.dram_bytes = int(round(float(row["dram_memory_used"]) * 1024))
    res.weights_area = row.get("weights_storage_area")
    if row.get("total_npu_encoded_weights"):
        res.encoded_weight_bytes = int(float(row["total_npu_encoded_weights"]))
        res.original_weight_bytes = int(float(row["total_original_weights"]))
    counts = dict(_OPS.findall(text))
    if counts:
        res.npu_ops, res.cpu_ops = int(counts.get("NPU", 0)), int(counts.get("CPU", 0))
    else:  # older output: count the per-layer rows
        res.npu_ops = sum(1 for r in per_layer if r.get("Target") == "NPU")
        res.cpu_ops = sum(1 for r in per_layer if r.get("Target") == "CPU")
    cpu = [r["Original Operator"] for r in per_layer if r.get("Target") == "CPU" and r.get("Original Operator")]
    if not cpu:
        cpu = [m[0] for m in _CPU_OP.findall(text)]
    # The compiled file names the CPU ops in TFLite spelling; Vela's report is the fallback.
    left = [op for op in compiled_ops(res.compiled) if op != NPU_CUSTOM_OP.decode()]
    res.tflite_ops_on_cpu = len(left)
    res.tflite_ops = sum(model_ops.values()) if model_ops else None
    res.cpu_op_names = sorted(set(left)) if left else sorted({_tflite_name(op, set(model_ops)) for op in cpu})
    return res


def compile_cached(model: str | Path, cfg: Any, model_ops: dict[str, int] | None = None,
                   cache: Optional[dict] = None) -> VelaResult:
    """:func:`compile_model`, once per (file contents, Vela configuration) in ``cache``: the
    validated model's verdict and the storage table of every variant share one compile."""
    if cache is None:
        return compile_model(model, cfg, model_ops)
    import hashlib

    key = (hashlib.sha256(Path(model).read_bytes()).hexdigest(), repr(cfg))
    if key not in cache:
        cache[key] = compile_model(model, cfg, model_ops)
    return cache[key]
