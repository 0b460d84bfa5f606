"""What a person sees of long work: bars on a terminal, one plain line per unit in a log, the
libraries' start-up chatter gone unless --verbose (edgeqat.progress, edgeqat.tf_compat)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time

import pytest

NESTED = """
from edgeqat.progress import bar
with bar("work", total=3) as outer:
    for i in range(3):
        outer.start(f"item {i}")
        with bar("inner", total=50) as inner:
            for _ in range(50):
                inner.advance()
                time.sleep(0.004)
        outer.done(f"item {i} finished")
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDGEQAT_PROGRESS", "EDGEQAT_VERBOSE", "TF_CPP_MIN_LOG_LEVEL", "COLUMNS")}
    return {**env, **extra}


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", "import time\n" + body]


def test_a_log_gets_one_plain_line_per_unit_with_elapsed_and_remaining_time():
    proc = subprocess.run(_script(NESTED), capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 3 and "\r" not in proc.stderr and "\x1b" not in proc.stderr, proc.stderr
    for i, line in enumerate(lines, 1):
        assert re.fullmatch(rf"\[edgeqat\] work {i}/3: item {i - 1} finished \(\d+s elapsed(, ~\d+s left)?\)", line), line
    assert "left" in lines[0] and "left" not in lines[2]  # nothing is left after the last unit
    assert "inner" not in proc.stderr  # fine-grained work has no lines of its own


def _on_a_terminal(cmd: list[str], env: dict[str, str]) -> str:
    """Run with stderr (and stdout) on a pseudo-terminal; return what it printed."""
    main, child = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env)
    os.close(child)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=10)
    os.close(main)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_a_terminal_gets_live_bars_and_keeps_the_lines_of_finished_units():
    out = _on_a_terminal(_script(NESTED), _env(TERM="xterm", COLUMNS="100"))
    assert "━" in out and "\x1b[" in out  # drawn and redrawn in place
    assert "inner" in out and "left" in out  # the nested bar, and the time remaining
    for i in range(3):
        assert f"[edgeqat] work {i + 1}/3: item {i} finished" in out


def test_the_mode_can_be_forced():
    proc = subprocess.run(_script(NESTED), capture_output=True, text=True, env=_env(EDGEQAT_PROGRESS="plain"))
    assert len(proc.stderr.splitlines()) == 3
    out = _on_a_terminal(_script(NESTED), _env(TERM="xterm", EDGEQAT_PROGRESS="plain"))
    assert "━" not in out and len(out.strip().splitlines()) == 3


FILTERED = """
import os, sys
from edgeqat.progress import native_stderr_filtered
print("python before", file=sys.stderr, flush=True)
with native_stderr_filtered([r"^noise "]):
    os.write(2, b"noise 1\\nkept line\\nnoise 2\\n")
print("python after", file=sys.stderr, flush=True)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_native_noise_is_dropped_and_everything_else_kept_unless_verbose(verbose):
    env = _env(**({"EDGEQAT_VERBOSE": "1"} if verbose else {}))
    proc = subprocess.run(_script(FILTERED), capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    want = ["python before", "noise 1", "kept line", "noise 2", "python after"]
    assert proc.stderr.splitlines() == (want if verbose else [w for w in want if not w.startswith("noise")])


LOAD_TF = "from edgeqat.tf_compat import tf, keras\nprint(int(tf.reduce_sum(tf.constant([1, 2]))))\n"


def test_tensorflow_loads_silently_and_verbose_brings_its_lines_back():
    quiet = subprocess.run(_script(LOAD_TF), capture_output=True, text=True, env=_env(), timeout=120)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "3", quiet.stderr
    assert quiet.stderr.strip() == ""
    loud = subprocess.run(_script(LOAD_TF), capture_output=True, text=True, env=_env(EDGEQAT_VERBOSE="1"), timeout=120)
    assert loud.returncode == 0 and len(loud.stderr.splitlines()) >= 2, loud.stderr  # absl, oneDNN, CUDA probe...


def test_early_stopping_says_which_epochs_weights_it_kept(tiny_prepared, capfd, monkeypatch):
    """With a zero learning rate val_loss never improves: patience 2 stops after epoch 3 and
    keeps epoch 1's weights; each epoch run has one line."""
    from edgeqat.data.shards import make_dataset
    from edgeqat.models.training import compile_classifier, fit
    from edgeqat.tf_compat import keras

    monkeypatch.setenv("EDGEQAT_PROGRESS", "plain")
    train, val = (make_dataset(tiny_prepared / s, "zero_one", 16) for s in ("train", "val"))
    model = keras.Sequential([keras.layers.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(4)])
    compile_classifier(model, 0.0)
    capfd.readouterr()
    rows = fit(model, train, val, epochs=6, patience=2, tag="tiny")
    err = capfd.readouterr().err
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert len(re.findall(r"^\[edgeqat\] tiny epoch \d/6: loss=", err, re.MULTILINE)) == 3, err
    assert ("[edgeqat] tiny: early stopping after epoch 3/6 (val_loss did not improve for 2 epochs); "
            f"restored the weights of epoch 1 (val_loss {rows[0]['val_loss']:.4f})") in err, err
