"""A device that is really there: an OpenSSH server on 127.0.0.1 (a generated host key and user
key, a high port) stands in for a board, a profile connects to it, and `edgeqat validate`
measures on it, also through an ssh config alias and a jump host. Also the `host` profile, a
measured latency over budget, and the failures a lab has: an unreachable host, a refused key,
no Python, no numpy, no LiteRT, the wrong architecture, a timeout shorter than one run, and a
device that never answers (stopped on both ends, no scratch folder left).

sshd comes from Debian's openssh-server (`.ci/run` installs it); without it these tests skip,
and under CI (CI=true) fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from integration.conftest import free_port, require, run
from sshd_lab import loopback_sshd, unavailable

pytestmark = pytest.mark.integration


def _require(reason: str | None) -> None:
    require(reason, "the device lab")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on loopback, authorising one generated key; the client trusts only its host key."""
    _require(unavailable())
    with loopback_sshd(tmp_path_factory.mktemp("sshd")) as lab:
        yield lab


@pytest.fixture(scope="module")
def lab_model(tmp_path_factory) -> Path:
    """A small int8 conv net (~1 M MACs): a measurable workload that runs in well under a millisecond."""
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.tf_compat import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(16, 3, strides=2, activation="relu")(inp)
    x = L.DepthwiseConv2D(3, activation="relu")(x)
    x = L.Conv2D(32, 1, activation="relu")(x)
    model = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(0)
    rep = lambda: ([rng.random((1, 32, 32, 3), dtype=np.float32)] for _ in range(8))  # noqa: E731
    path = tmp_path_factory.mktemp("lab") / "lab_int8.tflite"
    path.write_bytes(convert_variant("ptq_int8", model, None, rep, "int8"))
    return path


@pytest.fixture(scope="module")
def numpy_only(tmp_path_factory) -> Path:
    """A folder holding numpy (and its bundled libraries) and nothing else: with `python -S` and
    this as PYTHONPATH, the device has numpy but no LiteRT."""
    site = Path(np.__file__).resolve().parent.parent
    folder = tmp_path_factory.mktemp("numpy_only")
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (folder / name).symlink_to(site / name)
    return folder


def board(tmp_path: Path, sshd: dict, name: str = "bench_pi", *, device_class: str = "x86", budget: float = 100,
          **connect) -> Path:
    """A profile YAML for the sshd board; ``connect`` overrides its connect: fields."""
    root = sshd["root"]
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    conn = {"url": f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}", "python": sys.executable,
            "identity_file": str(root / "user_key"), "scratch": str(scratch), "connect_timeout_s": 5,
            "ssh_options": [f"UserKnownHostsFile={root / 'known_hosts'}", "StrictHostKeyChecking=yes"], **connect}
    prof = {"name": name, "title": "a board on the bench (sshd on 127.0.0.1)", "device_class": device_class,
            "runtime": "litert", "threads": 1, "latency_budget_ms": budget, "connect": conn,
            "sources": ["measured over SSH"]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(prof))  # YAML is a superset of JSON
    return path


def validate_cli(tmp_path: Path, model: Path, *profiles: Path | str, extra: tuple = ()) -> subprocess.CompletedProcess:
    args = ["edgeqat", "validate", str(model), *sum((["-d", str(p)] for p in profiles), []),
            "--calibration", str(tmp_path / "measured.csv"), *extra]
    return run(args, cwd=tmp_path, check=False, env={"COLUMNS": "200"})


def test_validate_measures_on_a_board_over_ssh(tmp_path, sshd, lab_model):
    prof = board(tmp_path, sshd)
    out = validate_cli(tmp_path, lab_model, prof, extra=("--json",))
    assert out.returncode == 0, out.stdout + out.stderr
    v = json.loads(out.stdout)["devices"]["bench_pi"]
    m = v["measured"]
    assert v["latency_source"] == "measured" and v["latency_ms"] == m["p50_ms"] > 0 and m["p90_ms"] >= m["p50_ms"]
    assert m["where"].startswith("ssh://") and m["runs"] == 50 and m["date"]
    assert m["peak_rss_bytes"] > m["rss_before_load_bytes"] > 0
    assert m["machine"] == "x86_64" and m["cpu"] and m["runtime"] == "ai_edge_litert" and m["runtime_version"]
    assert m["parity"]["within_tolerance"] and m["parity"]["bit_exact"] and m["parity"]["samples"] == 16
    print(f"one remote measurement over SSH: {m['wall_s']:.2f} s (p50 {m['p50_ms']:.3f} ms)")
    assert not list((tmp_path / "scratch").iterdir())  # the scratch folder on the device is gone
    rows = (tmp_path / "measured.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("bench_pi,") and ",int8,1,True," in rows[1]
    # the next estimate for this board fits its measured row
    again = json.loads(validate_cli(tmp_path, lab_model, prof, extra=("--json",)).stdout)["devices"]["bench_pi"]
    assert again["latency_estimate"]["source"] == "estimate from measured rows"
    # measured.csv keeps milliseconds to 6 decimals (1 ns), so the fit returns the rounded p50
    assert again["latency_estimate"]["latency_ms_estimate"] == pytest.approx(round(m["p50_ms"], 6), rel=1e-6)


@pytest.mark.parametrize("case, change, check, says", [
    ("unreachable", {"url": "ssh://root@127.0.0.1:{closed}"}, "connect", "Connection refused"),
    ("wrong key", {"identity_file": "{root}/other_key"}, "auth", "Permission denied"),
    ("no python", {"python": "python3-not-installed"}, "python", "python3-not-installed"),
    ("no runtime", {"python": f"{sys.executable} -S"}, "runtime", "numpy is missing on the device"),
    ("no litert", {"python": "env PYTHONPATH={numpy_only} " + f"{sys.executable} -S"}, "runtime",
     "no LiteRT on the device: neither ai_edge_litert nor tflite_runtime imports"),
    ("wrong arch", {"device_class": "arm_linux"}, "arch", "the device is x86_64, the profile expects aarch64"),
    ("timeout", {"timeout_s": 1e-6}, "timeout", "shorter than one inference"),
    # the device's Python hangs past startup + run time: the device's own `timeout` stops it (~1 s)
    ("hard timeout", {"python": f"sleep 8; {sys.executable}", "startup_timeout_s": 0.5, "timeout_s": 0.5}, "timeout",
     "the device stopped the run"),
])
def test_each_failure_is_one_line_and_leaves_nothing(tmp_path, sshd, lab_model, numpy_only, case, change, check, says):
    change = {k: v.format(closed=free_port(), root=sshd["root"], numpy_only=numpy_only) if isinstance(v, str) else v
              for k, v in change.items()}
    cls = change.pop("device_class", "x86")
    prof = board(tmp_path, sshd, device_class=cls, **change)
    out = validate_cli(tmp_path, lab_model, prof)
    assert out.returncode == 1, out.stdout + out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("  bench_pi: "))
    assert f"measured latency could not run ({check} check)" in line and says in line, line
    assert "Traceback" not in out.stdout + out.stderr
    assert not list((tmp_path / "scratch").iterdir()), case  # nothing left on the device
    assert not (tmp_path / "measured.csv").exists()  # no row from a measurement that did not happen


@pytest.mark.parametrize("python", ["sleep 8; {py}", "trap '' TERM; sleep 8; {py}"], ids=["stops", "ignores SIGTERM"])
def test_a_local_run_past_its_time_is_killed_and_leaves_no_scratch_folder(tmp_path, lab_model, python):
    """`connect: local` whose Python never answers: the whole process group is stopped (SIGTERM,
    so the script's trap removes the folder; SIGKILL 2 s later for one that ignores it, and the
    folder is removed from here). ~0.5 s and ~2.5 s."""
    from edgeqat.devices.profiles import Connect, resolve_profiles
    from edgeqat.devices.runtimes.measured import MeasureError, measure

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    conn = Connect(url="local", python=python.format(py=sys.executable), scratch=str(scratch),
                   connect_timeout_s=0.1, startup_timeout_s=0.1, timeout_s=0.1)
    (host,) = resolve_profiles(["host"])
    t0 = time.monotonic()
    with pytest.raises(MeasureError) as err:
        measure(host.model_copy(update={"connect": conn}), lab_model, np.zeros((1, 32, 32, 3), np.int8), runs=5)
    assert err.value.check == "timeout" and "within 0.3 s (while the device's Python started)" in str(err.value)
    assert time.monotonic() - t0 < 6  # not the 8 s the device's Python would have taken
    assert not list(scratch.iterdir())


def test_a_measured_latency_over_budget_fails_the_device(tmp_path, lab_model):
    """The budget is checked against the measured p50, and the reason says it was measured."""
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.validate import validate_on_device

    (host,) = resolve_profiles(["host"])
    v = validate_on_device(lab_model, host.model_copy(update={"latency_budget_ms": 1e-6}), latency_runs=5,
                           calibration=tmp_path / "measured.csv")
    p50 = v["measured"]["p50_ms"]
    assert not v["passed"] and v["latency_source"] == "measured" and v["latency_ms"] == p50 > 1e-6
    reason = next(r for r in v["reasons"] if "latency" in r)
    assert reason == f"measured latency p50 {p50:.3g} ms on host, {v['measured']['date'][:10]} > budget 1e-06 ms"
    assert v["misses"]["latency"] == {"needed": p50, "available": 1e-6}


def test_an_ssh_config_alias_through_a_jump_host(tmp_path, sshd, lab_model):
    """`connect.ssh_config` (ssh -F): the board is an alias of that file, reached through a
    ProxyJump hop given in ssh_options (the same sshd, named `localhost`): two logins, one measurement."""
    root, port, user = sshd["root"], sshd["port"], sshd["user"]
    config = tmp_path / "ssh_config"
    config.write_text(f"Host lab-jump\n  HostName localhost\n  Port {port}\n  User {user}\n"
                      f"Host lab-board\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
                      f"Host *\n  IdentityFile {root / 'user_key'}\n  IdentitiesOnly yes\n"
                      f"  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking yes\n  BatchMode yes\n")
    prof = board(tmp_path, sshd, url="ssh://lab-board", identity_file=None, ssh_config=str(config),
                 ssh_options=["ProxyJump=lab-jump"])
    logins = (root / "sshd.log").read_text().count("Accepted publickey")
    out = validate_cli(tmp_path, lab_model, prof, extra=("--json",))
    assert out.returncode == 0, out.stdout + out.stderr
    m = json.loads(out.stdout)["devices"]["bench_pi"]["measured"]
    assert m["where"] == "ssh://lab-board" and m["p50_ms"] > 0 and m["parity"]["bit_exact"]
    assert (root / "sshd.log").read_text().count("Accepted publickey") - logins == 2  # the hop, then the board
    assert not list((tmp_path / "scratch").iterdir())


def test_host_profile_measures_the_demo_model(tmp_path):
    """`host`: the machine edgeqat runs on, measured in a child process with the same runner."""
    from edgeqat.devices.calibrate import reference_model
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.validate import validate_on_device

    # the demo's model: DS-CNN at width 1 on the digits as params.yaml prepares them (16x16x1, 10 classes)
    model = reference_model("dscnn", 1.0, 16, "int8", tmp_path / "ref", channels=1)
    (host,) = resolve_profiles(["host"])
    v = validate_on_device(model, host, latency_runs=20, calibration=tmp_path / "measured.csv")
    assert v["passed"], v["reasons"]
    assert v["latency_source"] == "measured" and v["measured"]["where"] == "local" and v["latency_ms"] > 0
    assert v["measured"]["threads"] == host.threads and v["measured"]["xnnpack"] is True
    assert v["measured"]["parity"]["bit_exact"]


@pytest.mark.slow
def test_the_raspberry_pi_path_emulated_aarch64_python_over_ssh(tmp_path, sshd, lab_model):
    """The remote interpreter is the emulated aarch64 Python from `make arm64`: the runner, the
    arch check and the parity check take the path a Raspberry Pi's Python takes (~30 s)."""
    from edgeqat.devices.qemu import QemuUnavailable, emulated_python

    try:
        python = emulated_python(tmp_path / "qemu", cpu="cortex-a72")
    except QemuUnavailable as err:
        _require(err.reason)
    prof = board(tmp_path, sshd, "emulated_pi", device_class="arm_linux", budget=10_000, python=python,
                 startup_timeout_s=300, timeout_s=300)
    out = validate_cli(tmp_path, lab_model, prof, extra=("--json", "--latency-runs", "10"))
    assert out.returncode == 0, out.stdout + out.stderr
    v = json.loads(out.stdout)["devices"]["emulated_pi"]
    m = v["measured"]
    assert v["latency_source"] == "measured" and m["p50_ms"] > 0 and m["peak_rss_bytes"] > 0
    assert m["machine"] == "aarch64" and m["cpu"] == "Cortex-A72" and m["runtime"] == "ai_edge_litert"
    assert m["parity"]["within_tolerance"], m["parity"]
    assert not list((tmp_path / "scratch").iterdir())


@pytest.mark.slow
def test_calibrated_host_estimates_a_held_out_zoo_model_within_25_percent(tmp_path):
    """`edgeqat devices calibrate host` (the zoo at nine sizes), then a zoo model at a size it never
    measured: the estimate from the measured rows is within 25 % of its measurement (~3 min)."""
    from edgeqat.devices.calibrate import reference_model
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.validate import validate_on_device

    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = run(["edgeqat", "devices", "calibrate", "host", "--json"], cwd=tmp_path, env=env)
    res = json.loads(out.stdout)
    assert len(res["rows"]) == 9 and res["after"]["heldout_points"] == 9
    assert (tmp_path / "devices" / "measured.csv").is_file()
    model = reference_model("resnet", 1.5, 32, "int8", tmp_path / "heldout")  # a width the set does not have
    host, j1900 = resolve_profiles(["host", "j1900"])
    before = validate_on_device(model, j1900, latency_runs=5)["latency_ms_estimate"]  # the x86 PC estimate edgeqat had
    v = validate_on_device(model, host, latency_runs=50, calibration=tmp_path / "devices" / "measured.csv")
    est, measured = v["latency_ms_estimate"], v["latency_ms"]
    assert v["latency_estimate"]["source"] == "estimate from measured rows" and not v["latency_estimate"]["extrapolated"]
    err = abs(est - measured) / measured
    print(f"held-out resnet a1.5 32x32: measured {measured:.4f} ms, estimate {est:.4f} ms ({err:.1%}); "
          f"published x86-PC proxy (j1900) {before:.4f} ms ({abs(before - measured) / measured:.0%}); "
          f"leave-one-out over the set: median {res['after']['median_rel_error']:.1%}")
    assert err <= 0.25
