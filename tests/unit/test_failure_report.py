"""An unexpected exception is one line naming the command, the model and the exception,
with the traceback in a log file; --verbose prints the traceback too."""

from __future__ import annotations

import sys

import pytest

from edgeqat.adapters.cli import app as cli


def _boom(*args, **kwargs):
    raise KeyError("input_1")


def _run(monkeypatch, tmp_path, argv):
    import edgeqat.steps.qat as step

    monkeypatch.setattr(step, "qat", _boom)  # a fault injected where a bug would be
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.setattr(sys, "argv", ["edgeqat", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return exit_.value.code


def test_unexpected_error_is_one_line_with_a_log(monkeypatch, tmp_path, capsys):
    code = _run(monkeypatch, tmp_path, ["stage", "qat", "--fp32-model", "user.keras"])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edgeqat: unexpected error in stage qat on user.keras: KeyError: 'input_1'")
    assert "Traceback" not in err
    logs = list((tmp_path / "logs" / "errors").glob("*-stage-qat-*.log"))
    assert len(logs) == 1 and str(logs[0].relative_to(tmp_path)) in lines[0]
    body = logs[0].read_text()
    assert "Traceback (most recent call last)" in body and "_boom" in body and "stage qat --fp32-model user.keras" in body


def test_default_model_is_named_when_no_option_is_given(monkeypatch, tmp_path, capsys):
    _run(monkeypatch, tmp_path, ["stage", "qat"])
    assert "in stage qat on models/fp32.keras: KeyError" in capsys.readouterr().err


def test_verbose_prints_the_traceback(monkeypatch, tmp_path, capsys):
    code = _run(monkeypatch, tmp_path, ["--verbose", "stage", "qat"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback (most recent call last)" in err and "_boom" in err
    assert err.strip().splitlines()[-1].startswith("edgeqat: unexpected error in stage qat")
