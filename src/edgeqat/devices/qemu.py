"""Run a .tflite with the aarch64 build of LiteRT on an emulated Cortex-A72 (Raspberry Pi 4
class), via QEMU user-mode emulation, and compare with the x86 outputs.

``make arm64`` (scripts/setup_arm64.sh) prepares ``arm64_root()``: Debian's arm64
python3.11 unpacked in ``root/`` and the aarch64 numpy + ai-edge-litert wheels in ``site/``.
Each run executes ``qemu_runner.py`` (standalone: numpy + LiteRT only) under
``qemu-aarch64-static -cpu cortex-a72``.

LiteRT's CPU feature detection (the cpuinfo library) reads ``/proc/cpuinfo``, which under
user-mode QEMU is still the host's x86 one, and the aarch64 runtime segfaults at start.
Each run shows it an ARM cpuinfo file instead, one of two ways (``cpuinfo=``):

* ``"bind"``: a private mount namespace (``unshare -m``, needs root and a kernel/container
  that allows it) in which the file is bind-mounted over ``/proc/cpuinfo``; the host's
  mounts are untouched.
* ``"sysroot"``: QEMU's ``-L`` prefix serves a guest path from the prefix when the file
  exists there, so the run gets its own prefix: symlinks to the arm64 root's top-level
  directories plus ``proc/cpuinfo``. No privileges needed.

``"auto"`` (the default) binds when ``unshare -m`` works here, else uses the sysroot.

Latencies measured under emulation say nothing about a real device's speed; outputs do
say whether the ARM kernels compute the same numbers.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
RUNNER = Path(__file__).resolve().parent / "qemu_runner.py"
QEMU = "qemu-aarch64-static"
PYTHON = "usr/bin/python3.11"


class QemuUnavailable(Exception):
    """Emulated aarch64 runs are not possible here; ``str(err)`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class QemuResult:
    outputs: np.ndarray
    latency_ms: list[float]
    machine: str
    cpu: str
    wall_s: float
    runtime_version: str = ""
    cpuinfo: str = ""  # how the ARM /proc/cpuinfo was provided: "bind" or "sysroot"
    extra: dict = field(default_factory=dict)


def arm64_root() -> Path:
    """Where ``make arm64`` put the emulated system: ``$EDGEQAT_ARM64_ROOT`` or ``<repo>/.cache/arm64``."""
    env = os.environ.get("EDGEQAT_ARM64_ROOT")
    return Path(env).expanduser().resolve() if env else REPO / ".cache" / "arm64"


@lru_cache(maxsize=1)
def _can_unshare_mounts() -> bool:
    """Whether this process may make a private mount namespace and bind-mount in it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    try:
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               "mount --bind /proc/self/status /proc/cpuinfo"],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def qemu_available(root: Path | None = None, cpuinfo: str = "auto") -> str | None:
    """None when :func:`run_on_qemu` can work here, else the reason it cannot."""
    root = Path(root) if root is not None else arm64_root()
    if shutil.which(QEMU) is None:
        return f"{QEMU} is missing: run `make arm64` as root (installs the qemu-user-static package)"
    if not (root / "root" / PYTHON).is_file() or not (root / "site" / "ai_edge_litert").is_dir():
        return f"the arm64 root {root} is not set up: run `make arm64`"
    if not RUNNER.is_file():
        return f"{RUNNER} is missing"
    if cpuinfo not in ("auto", "bind", "sysroot"):
        return f"cpuinfo={cpuinfo!r}: expected 'auto', 'bind' or 'sysroot'"
    if cpuinfo == "bind" and not _can_unshare_mounts():
        if os.geteuid() != 0:
            return ("not root: `unshare -m` cannot bind-mount an ARM /proc/cpuinfo (LiteRT's aarch64 build "
                    "segfaults on the host's x86 one); use cpuinfo='sysroot'")
        return "`unshare -m` + `mount --bind` is not permitted here (container without CAP_SYS_ADMIN?); use cpuinfo='sysroot'"
    return None


def _cpuinfo(cpu: str, cores: int = 4) -> str:
    """A Raspberry Pi 4 style /proc/cpuinfo (arm64 kernel format)."""
    parts = {"cortex-a53": "0xd03", "cortex-a55": "0xd05", "cortex-a57": "0xd07", "cortex-a72": "0xd08",
             "cortex-a76": "0xd0b"}
    part = parts.get(cpu.lower(), "0xd08")
    features = "fp asimd evtstrm crc32 cpuid"
    if part in ("0xd05", "0xd0b"):
        features = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
    block = (
        "processor\t: {i}\n"
        "BogoMIPS\t: 108.00\n"
        f"Features\t: {features}\n"
        "CPU implementer\t: 0x41\n"
        "CPU architecture: 8\n"
        "CPU variant\t: 0x0\n"
        f"CPU part\t: {part}\n"
        "CPU revision\t: 3\n\n"
    )
    text = "".join(block.format(i=i) for i in range(cores))
    return text + ("Hardware\t: BCM2835\nRevision\t: c03112\nSerial\t\t: 10000000abcdef01\n"
                   "Model\t\t: Raspberry Pi 4 Model B Rev 1.2\n")


def run_on_qemu(model_path: str | Path, inputs: np.ndarray, *, cpu: str = "cortex-a72", threads: int = 1,
                timeout_s: float = 600, root: Path | None = None, cpuinfo: str = "auto") -> QemuResult:
    """Run ``model_path`` on each sample of ``inputs`` (already in the model input's dtype,
    shape (N, *input_shape[1:])) under emulated aarch64; the raw output tensors come back
    stacked. ``cpuinfo``: how the run gets an ARM /proc/cpuinfo (module docstring). Raises
    :class:`QemuUnavailable` when the emulator cannot run here and RuntimeError when the
    run fails."""
    root = Path(root) if root is not None else arm64_root()
    reason = qemu_available(root, cpuinfo)
    if reason is not None:
        raise QemuUnavailable(reason)
    method = cpuinfo if cpuinfo != "auto" else ("bind" if _can_unshare_mounts() else "sysroot")
    model_path = Path(model_path).resolve()
    if not model_path.is_file():
        raise RuntimeError(f"{model_path}: .tflite file not found")
    sysroot = (root / "root").resolve()
    site = (root / "site").resolve()

    with tempfile.TemporaryDirectory(prefix="edgeqat-qemu-") as tmp:
        d = Path(tmp)
        np.save(d / "inputs.npy", np.ascontiguousarray(inputs))
        (d / "cpuinfo").write_text(_cpuinfo(cpu, cores=max(4, threads)))
        prefix = sysroot
        if method == "sysroot":
            prefix = _make_prefix(d / "sysroot", sysroot, _cpuinfo(cpu, cores=max(4, threads)))
        guest = [QEMU, "-cpu", cpu, "-L", str(prefix), str(sysroot / PYTHON), "-s", "-B", str(RUNNER),
                 str(model_path), str(d / "inputs.npy"), str(d / "outputs.npy"), str(d / "result.json"), str(threads)]
        if method == "bind":
            script = f"mount --bind {shlex.quote(str(d / 'cpuinfo'))} /proc/cpuinfo && exec {shlex.join(guest)}"
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
        else:
            cmd = guest
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_python_env(sysroot, site), "HOME": tmp, "TMPDIR": tmp,
               "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, cwd=tmp)
        except subprocess.TimeoutExpired as err:
            tail = (err.stderr or b"")[-3000:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            raise RuntimeError(f"{model_path}: emulated aarch64 run timed out after {timeout_s:g} s\n{tail}") from None
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not (d / "result.json").is_file():
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            if proc.returncode in (139, -11):
                how += " (segfault)"
            raise RuntimeError(f"{model_path}: emulated aarch64 run ({cpu}, cpuinfo via {method}) failed with {how}\n"
                               f"--- stderr (tail)\n{proc.stderr[-3000:]}")
        result = json.loads((d / "result.json").read_text())
        outputs = np.load(d / "outputs.npy")

    return QemuResult(
        outputs=outputs,
        latency_ms=[float(v) for v in result["latency_ms"]],
        machine=str(result["machine"]),
        cpu=cpu,
        wall_s=wall,
        runtime_version=f"{result.get('runtime', '')} {result.get('runtime_version', '')}".strip(),
        cpuinfo=method,
        extra={k: v for k, v in result.items() if k not in ("latency_ms", "machine")},
    )


def _make_prefix(prefix: Path, sysroot: Path, cpuinfo_text: str) -> Path:
    """A QEMU ``-L`` prefix: the arm64 root's top-level folders, plus an ARM proc/cpuinfo."""
    (prefix / "proc").mkdir(parents=True)
    for entry in sysroot.iterdir():
        if entry.name != "proc":
            (prefix / entry.name).symlink_to(entry)
    (prefix / "proc" / "cpuinfo").write_text(cpuinfo_text)
    return prefix


def _python_env(sysroot: Path, site: Path) -> dict[str, str]:
    return {"PYTHONHOME": str(sysroot / "usr"), "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}


def emulated_python(folder: str | Path, *, cpu: str = "cortex-a72", root: Path | None = None) -> str:
    """A shell command that starts the emulated aarch64 Python (a Raspberry Pi's, as far as the
    model can tell): usable as a profile's ``connect.python``, so the device-lab path a Pi takes
    runs on this machine. ``folder`` (new or empty) gets the run's QEMU prefix with an ARM
    /proc/cpuinfo (the no-root way; see the module docstring). Raises QemuUnavailable."""
    root = Path(root) if root is not None else arm64_root()
    reason = qemu_available(root, "sysroot")
    if reason is not None:
        raise QemuUnavailable(reason)
    sysroot, site = (root / "root").resolve(), (root / "site").resolve()
    prefix = _make_prefix(Path(folder).resolve() / "sysroot", sysroot, _cpuinfo(cpu))
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in _python_env(sysroot, site).items())
    return f"env {env} {QEMU} -cpu {shlex.quote(cpu)} -L {shlex.quote(str(prefix))} {shlex.quote(str(sysroot / PYTHON))}"


def compare_outputs(x86: np.ndarray, arm: np.ndarray) -> dict:
    """How far the ARM outputs are from the x86 ones, per sample (axis 0)."""
    a, b = np.asarray(x86), np.asarray(arm)
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: x86 {a.shape} vs arm {b.shape}")
    n = a.shape[0] if a.ndim else 1
    if a.size == 0:
        return {"bit_exact": True, "max_abs_diff": 0.0, "top1_agreement": 1.0, "mismatched": 0}
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    bit_exact = a.dtype == b.dtype and a.tobytes() == b.tobytes()
    per_sample = diff.reshape(n, -1)
    flat_a, flat_b = a.reshape(n, -1), b.reshape(n, -1)
    top1 = float(np.mean(np.argmax(flat_a, axis=1) == np.argmax(flat_b, axis=1)))
    return {
        "bit_exact": bool(bit_exact),
        "max_abs_diff": float(np.nanmax(diff)) if diff.size else 0.0,
        "top1_agreement": top1,
        "mismatched": int(np.count_nonzero(np.any(per_sample != 0, axis=1))),
    }
