"""Fail fast under DVC: a required device the model cannot fit stops `dvc repro` before the
first training epoch, naming the device, the figure, the budget and a fix, and the fix it
names passes the same check (slow: two DVC runs with TensorFlow in each stage)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from integration.conftest import BIN, make_pipeline_repo, run, stages_run, tiny_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def repro_that_cannot_fit(root: Path) -> tuple[Path, subprocess.CompletedProcess, float]:
    """A scratch pipeline repository of MobileNetV2 at alpha 1.0 on 96x96x3 images with cortex_m4
    (and rpi4) required, and its `dvc repro`: (repo, the process, wall seconds). bench/default_gate.py
    times the same run."""
    params = tiny_params(**{"prepare.image_size": 96, "prepare.channels": 3, "train.model": "mobilenetv2",
                            "train.alpha": 1.0, "validate.devices": ["rpi4", "cortex_m4"],
                            "validate.required_devices": ["rpi4", "cortex_m4"]})
    repo = make_pipeline_repo(root / "proj", params)
    t0 = time.monotonic()
    proc = run([str(BIN / "dvc"), "repro"], repo, check=False)
    return repo, proc, time.monotonic() - t0


def test_cortex_m4_with_mobilenetv2_stops_dvc_repro_before_training(tmp_path):
    repo, proc, wall = repro_that_cannot_fit(tmp_path)
    out = proc.stdout + proc.stderr
    check = re.search(r"stopped before training \((\d+) s\)", out)
    print(f"\ndvc repro stopped after {wall:.1f} s (preflight stage itself: {check and check.group(1)} s)")
    assert proc.returncode != 0
    assert stages_run(out) == ["prepare", "preflight"], out[-3000:]  # train never started
    assert not (repo / "models" / "fp32.keras").exists() and not (repo / "metrics" / "train.json").exists()
    assert check, out[-3000:]
    # the device, the figure and its budget, and fixes
    assert re.search(r"cortex_m4 \(.*\): flash 2,7\d\d,\d{3} bytes > budget 163,840 bytes", out), out[-3000:]
    assert "tensor arena (lower bound)" in out and "> budget 49,152 bytes" in out
    assert "validate.required_devices=[rpi4]" in out
    report = json.loads((repo / "reports" / "preflight.json").read_text())
    fix = report["devices"]["cortex_m4"]["settings"][0]["set"]
    line = next(ln for ln in out.splitlines() if "passes with " in ln)
    assert all(f"{k}={v}" in line for k, v in fix.items()), (line, fix)

    # the fix, as the message says to set it: the same check passes
    p = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in fix.items():
        section, name = key.split(".")
        p[section][name] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    again = run([str(BIN / "dvc"), "repro", "preflight"], repo)
    assert "every required device can hold" in again.stdout + again.stderr
    assert json.loads((repo / "reports" / "preflight.json").read_text())["devices"]["cortex_m4"]["passed"] is True
