"""The `edgeqat` command as a user types it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from integration.conftest import BIN

pytestmark = pytest.mark.integration


def edgeqat(*args, cwd=None):
    return subprocess.run([str(BIN / "edgeqat"), *args], capture_output=True, text=True, cwd=cwd)


def test_help_is_fast_and_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from edgeqat.adapters.cli.app import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TF_LOADED' if any(m.split('.')[0] in ('tensorflow', 'tf_keras') for m in sys.modules) else 'TF_NOT_LOADED')\n"
    )
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "TF_NOT_LOADED" in out.stdout and "stage" in out.stdout
    assert time.monotonic() - t < 10  # TensorFlow alone takes 4-8 s to import


def test_bad_params_exit_2_naming_the_key(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 0\n  colour: red\n")
    out = edgeqat("stage", "prepare", "--params", str(tmp_path / "params.yaml"), cwd=tmp_path)
    assert out.returncode == 2
    assert "train.epochs" in out.stderr and "train.colour: unknown key" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_data_folder_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("prepare:\n  source: folder\n  path: no/such/dir\n")
    out = edgeqat("stage", "prepare", "--params", "params.yaml", "--prepared", "prep", cwd=tmp_path)
    assert out.returncode == 2 and "no/such/dir: folder not found" in out.stderr
    assert not (tmp_path / "prep").exists()


def test_report_without_a_run_says_what_to_do(tmp_path):
    out = edgeqat("report", cwd=tmp_path)
    assert out.returncode == 2 and "run the pipeline first" in out.stderr


def test_check_params_accepts_the_shipped_file():
    from integration.conftest import REPO

    out = edgeqat("check-params", cwd=REPO)
    assert out.returncode == 0 and "ok" in out.stdout


def test_malformed_tag_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    out = edgeqat("stage", "track", "--params", "params.yaml", "--tag", "no-equals-sign", cwd=tmp_path)
    assert out.returncode == 2 and "--tag 'no-equals-sign': expected KEY=VALUE" in out.stderr
