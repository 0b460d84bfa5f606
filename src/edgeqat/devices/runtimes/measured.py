"""Latency measured on a device that is really there: a board over SSH, or this host.

One round trip per measurement. A POSIX shell on the device makes a scratch folder and
removes it when it exits, whatever happens (a crash, a kill, a cut connection); the
device's Python unpacks what comes on stdin into it -- :mod:`device_runner` (numpy and
LiteRT or tflite_runtime only), the ``.tflite`` and the sample inputs -- and runs the
runner, which prints one JSON line: p50/p90 inputs (every timed run), peak RSS, the CPU and
runtime versions, and the raw outputs of the sample inputs for the parity check.

SSH is the system OpenSSH client, so ``~/.ssh/config`` (aliases, jump hosts, keys) and the
agent work as everywhere else; ``BatchMode=yes`` makes it fail instead of prompting. ``local``
runs the same script with this interpreter. Every way it can fail is a :class:`MeasureError`
with the check that could not run and one line saying why.

A run that outlives its time is stopped on both ends, so it leaves no scratch folder: here the
script runs in its own process group, which gets SIGTERM (the script's trap then removes the
folder) and SIGKILL after a grace period; on an SSH device, where killing the client does not
stop the remote shell, the device's Python runs under the device's own ``timeout`` when it has
one (coreutils or BusyBox), so the remote side ends, and cleans up, by itself.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.devices.profiles import Connect, DeviceProfile
from edgeqat.errors import EdgeqatError

RUNNER = Path(__file__).resolve().parent / "device_runner.py"

# Unpacks the upload into the scratch folder (argv[1]) and runs the runner in this process
# (no second exec: an emulated Python cannot start another one).
BOOTSTRAP = r"""
import json, os, runpy, sys
d = sys.argv[1]
head = json.loads(sys.stdin.buffer.readline())
for name, size in head["files"]:
    data = sys.stdin.buffer.read(size)
    if len(data) != size:
        print(json.dumps({"error": "transfer", "message": "the upload to the device was cut short"}))
        sys.exit(3)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
spec = dict(head["spec"], model=os.path.join(d, "model.tflite"), inputs=os.path.join(d, "inputs.npy"))
with open(os.path.join(d, "spec.json"), "w") as f:
    json.dump(spec, f)
sys.argv = [os.path.join(d, "device_runner.py"), os.path.join(d, "spec.json")]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
NO_SCRATCH = 97  # the shell could not make the scratch folder


class MeasureError(EdgeqatError):
    """A measurement that could not be made: ``check`` names what could not run (connect, auth,
    host_key, python, runtime, arch, model, timeout, run), ``str()`` is one line."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


@dataclass
class Measurement:
    device: str
    where: str  # the connect URL ("local" for this host)
    date: str  # UTC, ISO 8601
    latency_ms: list[float]
    outputs: np.ndarray = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)  # what the runner reported: CPU, runtime, RSS
    wall_s: float = 0.0  # the whole round trip: connect, upload, load, runs

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latency_ms, 50))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.latency_ms, 90))

    def as_dict(self) -> dict[str, Any]:
        keep = ("machine", "cpu", "board", "cpu_part", "cores", "system", "python", "runtime", "runtime_version",
                "numpy_version", "threads", "xnnpack", "load_ms", "first_ms", "warmup", "peak_rss_bytes",
                "rss_before_load_bytes")
        return {"device": self.device, "where": self.where, "date": self.date, "source": "measured",
                "p50_ms": self.p50, "p90_ms": self.p90, "runs": len(self.latency_ms), "wall_s": round(self.wall_s, 3),
                **{k: self.info[k] for k in keep if self.info.get(k) is not None}}


TIMED_OUT = 124  # the device's `timeout` stopped its Python
GRACE_S = 2.0  # between SIGTERM and SIGKILL when a local run is stopped


def device_bound_s(conn: Connect) -> int:
    """Whole seconds the device's own ``timeout`` allows its Python (SSH): the startup and the runs."""
    return max(1, math.ceil(conn.startup_timeout_s + conn.timeout_s))


def _script(python: str, scratch: Optional[str], bound_s: Optional[int] = None) -> str:
    """The shell script run on the device: a scratch folder removed on exit, the upload unpacked
    and run there. ``bound_s``: stop the device's Python after that long with the device's own
    ``timeout`` when it has one (for SSH, where the client cannot stop the remote side)."""
    parent = shlex.quote(scratch) if scratch else '"${TMPDIR:-/tmp}"'
    run = f'{python} -c {shlex.quote(BOOTSTRAP)} "$d"'
    if bound_s is not None:
        # `sh -c` so a python that is a shell fragment ("env X=1 python3", "cd x; python3") is bounded whole
        n = bound_s
        inner = "sh -c " + shlex.quote(f'{python} -c {shlex.quote(BOOTSTRAP)} "$0"') + ' "$d"'
        run = (f"if timeout -k 2 1 true 2>/dev/null; then timeout -k 2 {n} {inner}\n"
               f"elif timeout 1 true 2>/dev/null; then timeout {n} {inner}\nelse {run}\nfi")
    return (f'd=$(mktemp -d {parent}/edgeqat-XXXXXX) || exit {NO_SCRATCH}\n'
            "trap 'rm -rf \"$d\"' EXIT\ntrap 'exit 129' HUP INT TERM\n"
            'echo "edgeqat-runner: connected $d" >&2\n'
            f"{run}\n")


def ssh_target(url: str) -> tuple[str, Optional[int]]:
    """``ssh://user@host:port`` -> ("user@host", port); ``ssh://alias`` -> ("alias", None)."""
    rest = url.removeprefix("ssh://").rstrip("/")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    return host, int(port) if port else None


def command(conn: Connect) -> list[str]:
    """The argv that runs the measurement script on the device."""
    if conn.local:
        return ["sh", "-c", _script(conn.python or shlex.quote(sys.executable), conn.scratch)]
    dest, port = ssh_target(conn.url)
    argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(conn.connect_timeout_s))}"]
    if conn.ssh_config:
        argv += ["-F", str(Path(conn.ssh_config).expanduser())]
    if port is not None:
        argv += ["-p", str(port)]
    if conn.identity_file:
        argv += ["-i", str(Path(conn.identity_file).expanduser()), "-o", "IdentitiesOnly=yes"]
    for opt in conn.ssh_options:
        argv += ["-o", opt]
    script = _script(conn.python or "python3", conn.scratch, device_bound_s(conn))
    return argv + [dest, "sh -c " + shlex.quote(script)]


def _upload(model: bytes, inputs: np.ndarray, spec: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(inputs))
    files = [("device_runner.py", RUNNER.read_bytes()), ("model.tflite", model), ("inputs.npy", buf.getvalue())]
    head = json.dumps({"files": [(n, len(b)) for n, b in files], "spec": spec}).encode() + b"\n"
    return head + b"".join(b for _, b in files)


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.replace("\r", "").splitlines()
            if ln.strip() and not ln.startswith("Warning: Permanently added")]


def _ssh_failure(url: str, stderr: str) -> MeasureError:
    """ssh's own exit status (255): which check failed, from its last message."""
    last = (_lines(stderr) or ["ssh exited with status 255 and no message"])[-1]
    low = last.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        return MeasureError("auth", f"{url} refused the login ({last}); check connect.identity_file, "
                                    "your ssh-agent or ~/.ssh/config")
    if "host key" in low:
        return MeasureError("host_key", f"{url}: {last} (add the host to known_hosts, or set connect.ssh_options)")
    return MeasureError("connect", f"cannot reach {url}: {last}")


def _phase(stderr: str) -> str:
    seen = {ln.removeprefix("edgeqat-runner: ") for ln in _lines(stderr) if ln.startswith("edgeqat-runner: ")}
    if "first inference done" in seen:
        return "during the timed runs"
    if "model loaded" in seen:
        return "during the first inference: connect.timeout_s is shorter than one run"
    if "runtime ready" in seen:
        return "while loading the model"
    if any(p.startswith("connected") for p in seen):
        return "while the device's Python started"
    return "before the device answered"


class _Stopped(Exception):
    """The run outlived its time and was stopped; ``stderr`` is what it said before that."""

    def __init__(self, stderr: bytes) -> None:
        super().__init__("stopped")
        self.stderr = stderr


def _run(argv: list[str], payload: bytes, limit: float) -> tuple[int, bytes, bytes]:
    """Run ``argv`` with ``payload`` on stdin in a new process group. Past ``limit`` seconds the
    whole group (the shell, the Python, a ProxyJump's ssh) gets SIGTERM, then SIGKILL after
    :data:`GRACE_S`, and :class:`_Stopped` is raised."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(payload, timeout=limit)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        pass
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            _, err = proc.communicate(timeout=wait)
            raise _Stopped(err or b"")
        except subprocess.TimeoutExpired:
            continue
    for pipe in (proc.stdin, proc.stdout, proc.stderr):  # a grandchild outside the group holds them
        if pipe is not None:
            pipe.close()
    raise _Stopped(b"")


def _remove_scratch(stderr: str) -> None:
    """After a local run was killed outright (its trap could not run): remove its scratch folder."""
    for ln in _lines(stderr):
        if ln.startswith("edgeqat-runner: connected "):
            d = Path(ln.removeprefix("edgeqat-runner: connected "))
            if d.name.startswith("edgeqat-") and d.is_dir():
                shutil.rmtree(d, ignore_errors=True)


def measure(prof: DeviceProfile, model: str | Path, inputs: np.ndarray, *, runs: int = 50) -> Measurement:
    """Time ``model`` on ``prof``'s device (``prof.connect``): ``inputs`` (already in the model
    input's dtype, one sample per row) run once each for their outputs, then ``warmup`` +
    ``runs`` timed invokes. Raises :class:`MeasureError` naming the check that could not run."""
    conn = prof.connect
    if conn is None:
        raise ValueError(f"{prof.name}: no connect: block, nothing to measure on")
    where = conn.url
    spec = {"threads": prof.threads, "xnnpack": prof.xnnpack, "warmup": conn.warmup, "runs": runs,
            "budget_s": conn.timeout_s, "arch": [] if conn.local else prof.expected_arch()}
    payload = _upload(Path(model).read_bytes(), inputs, spec)
    limit = conn.connect_timeout_s + conn.startup_timeout_s + conn.timeout_s
    argv = command(conn)
    t0 = time.perf_counter()
    try:
        returncode, stdout, stderr_b = _run(argv, payload, limit)
    except FileNotFoundError:
        raise MeasureError("connect", f"`{argv[0]}` not found: install the OpenSSH client") from None
    except _Stopped as err:
        stderr = err.stderr.decode(errors="replace")
        if conn.local:
            _remove_scratch(stderr)
        raise MeasureError("timeout", f"no answer from {where} within {limit:g} s "
                                      f"({_phase(stderr)}); the run was stopped") from None
    wall = time.perf_counter() - t0
    out, stderr = stdout.decode(errors="replace"), stderr_b.decode(errors="replace")
    result = next((ln for ln in reversed(_lines(out)) if ln.startswith("{")), None)
    if result is not None:
        r = json.loads(result)
        if "error" in r:
            raise MeasureError(r["error"], r["message"])
        outputs = np.load(io.BytesIO(base64.b64decode(r.pop("outputs_npy"))))
        return Measurement(prof.name, where, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           [float(v) for v in r.pop("latency_ms")], outputs, r, wall)
    if returncode == TIMED_OUT and not conn.local:
        raise MeasureError("timeout", f"the device stopped the run on {where} after "
                                      f"{device_bound_s(conn)} s ({_phase(stderr)}); "
                                      "connect.startup_timeout_s + connect.timeout_s is too short")
    if returncode == 255 and not conn.local and "edgeqat-runner: connected" not in stderr:
        raise _ssh_failure(where, stderr)
    if returncode == 127:
        raise MeasureError("python", f"no Python `{conn.python or 'python3'}` on {where} "
                                     f"({(_lines(stderr) or ['command not found'])[-1]}); set connect.python")
    if returncode == NO_SCRATCH:
        raise MeasureError("run", f"could not make a scratch folder on {where} "
                                  f"under {conn.scratch or '$TMPDIR or /tmp'}")
    how = f"signal {returncode - 128}" if returncode > 128 else f"exit status {returncode}"
    tail = [ln for ln in _lines(stderr) if not ln.startswith("edgeqat-runner: ")]
    raise MeasureError("run", f"the run on {where} failed ({how})" + (f": {tail[-1]}" if tail else ""))
