"""Unexpected failures, reported the way a user can act on them.

An error edgeqat anticipated (:class:`edgeqat.errors.EdgeqatError`) is one line, exit 2.
Anything else is a bug or an environment problem: the user gets one line naming the
command, the model it was working on and the exception, plus the path of a log file that
holds the full traceback (for a bug report); ``--verbose`` (or ``EDGEQAT_VERBOSE=1``,
handy under ``dvc repro``) prints the traceback as well. Exit 1.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from edgeqat.progress import VERBOSE_ENV
from edgeqat.progress import verbose as verbose_env

LOG_DIR = Path("logs") / "errors"
MODEL_OPTIONS = ("--model", "--fp32-model", "--fp32", "--reference", "--qat-model", "--qat")
MODEL_SUFFIXES = (".keras", ".h5", ".tflite")


def verbose(argv: Sequence[str]) -> bool:
    return "--verbose" in argv or verbose_env()


def command_and_model(root: Any, argv: Sequence[str]) -> tuple[str, str | None]:
    """("stage qat", "models/fp32.keras"): the subcommand words of ``argv`` and the model
    it names (an option, a positional model file, or the command's default)."""
    cmd, words = root, []
    for tok in argv:
        if tok.startswith("-"):
            continue
        if tok in getattr(cmd, "commands", {}):  # a (Typer) group
            cmd = cmd.commands[tok]
            words.append(tok)
        else:
            break
    model = None
    for opt in MODEL_OPTIONS:
        if opt in argv and argv.index(opt) + 1 < len(argv):
            model = argv[argv.index(opt) + 1]
            break
    if model is None:
        model = next((t for t in argv if t.endswith(MODEL_SUFFIXES) and not t.startswith("-")), None)
    if model is None and words[:1] == ["stage"] and len(words) == 2:
        model = _stage_model(words[1])
    if model is None and hasattr(cmd, "params"):
        defaults = {p.name: p.default for p in cmd.params}
        model = next((str(defaults[n]) for n in ("model", "fp32") if defaults.get(n)), None)
    return " ".join(words) or "edgeqat", model


def _stage_model(name: str) -> str | None:
    """The model file a stage reads (its first model input), else the one it writes."""
    from edgeqat.workspace.stages import STAGES

    for s in STAGES:
        if s.name == name:
            ports = [p for p in s.inputs if p.kind == "Model"] or [p for p in s.outputs if p.kind == "Model"]
            return ports[0].path if ports else None
    return None


def write_log(command: str, argv: Sequence[str], exc: BaseException) -> Path:
    """The full traceback under logs/errors/ (the system temp folder if that is not writable)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    from edgeqat.io import redact

    body = redact(f"edgeqat {' '.join(argv)}\ncwd: {os.getcwd()}\npython: {sys.version.split()[0]}\n\n"
                  + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"{stamp}-{command.replace(' ', '-')}-{os.getpid()}.log"
    for folder in (LOG_DIR, Path(tempfile.gettempdir()) / "edgeqat-errors"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.tmp"
            tmp.write_text(body)
            os.replace(tmp, folder / name)
            return folder / name
        except OSError:
            continue
    raise OSError("cannot write an error log")  # pragma: no cover - both folders unwritable


def report(root: Any, argv: Sequence[str], exc: BaseException) -> str:
    """The one line printed for an unexpected exception (the log is written here)."""
    command, model = command_and_model(root, argv)
    what = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    on = f" on {model}" if model else ""
    try:
        where = f"full traceback in {write_log(command, argv, exc)}"
    except OSError:
        where = "no log could be written"
    hint = "" if verbose(argv) else f"; --verbose or {VERBOSE_ENV}=1 prints it"
    return f"edgeqat: unexpected error in {command}{on}: {what} ({where}{hint})"
