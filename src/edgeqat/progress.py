"""What a person sees of long work: progress bars on a terminal, plain lines elsewhere, and
the switch (``--verbose`` / ``EDGEQAT_VERBOSE=1``) that lets the libraries' own chatter through.

    from edgeqat.progress import bar

    with bar("convert", total=len(variants)) as b:
        for v in variants:
            b.start(v)                              # what is being worked on (the bar's label)
            ...
            b.done(f"{v}: {n:,} bytes in {s} s")    # one unit finished: its line

On a terminal (stderr is a TTY), rich draws the bars with the elapsed and remaining time; a
bar opened while another is open (the batches of an epoch) shows under it and goes away when
closed; the line of each finished unit prints above the bars and stays. Elsewhere (DVC, CI,
Kubeflow logs) nothing is redrawn: each :meth:`Bar.done` prints one plain line with the count,
the elapsed and the remaining time, and :meth:`Bar.advance` (fine-grained work: batches,
images) prints nothing. ``EDGEQAT_PROGRESS=plain`` or ``=bars`` forces either.

Standard library only at import; rich is imported when a bar first opens on a terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from typing import Any, Iterable, Iterator, Optional

VERBOSE_ENV = "EDGEQAT_VERBOSE"
MODE_ENV = "EDGEQAT_PROGRESS"
PREFIX = "[edgeqat]"


def verbose() -> bool:
    """Whether the user asked for everything (``--verbose`` sets ``EDGEQAT_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def interactive() -> bool:
    """Bars (a terminal) or plain lines (a log)."""
    mode = os.environ.get(MODE_ENV, "").strip().lower()
    if mode in ("plain", "bars"):
        return mode == "bars"
    try:
        return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def clock(seconds: float) -> str:
    """4s, 2m05s, 1h03m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


# The one rich Progress shared by the bars open at a time (nested work shows as nested bars).
_live: dict[str, Any] = {"progress": None, "open": 0, "file": None}


def _columns() -> tuple:
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Remaining(ProgressColumn):
        """From the average pace so far (rich's own estimate needs many quick steps)."""

        def render(self, task: Any) -> Text:
            if not task.total or not task.completed or task.finished or task.elapsed is None:
                return Text("")
            return Text(f"~{clock(task.elapsed / task.completed * (task.total - task.completed))} left",
                        style="progress.remaining")

    return (TextColumn("{task.description}"), BarColumn(bar_width=28), MofNCompleteColumn(),
            TimeElapsedColumn(), Remaining())


def _open_live() -> Any:
    if _live["progress"] is None:
        from rich.console import Console
        from rich.progress import Progress

        # The bars draw on their own descriptor of the terminal, so that native_stderr_filtered
        # (which swaps descriptor 2 meanwhile) never captures them; Python's writes to stderr go
        # through them (rich's redirect) and print above the bars.
        sys.stderr.flush()
        try:
            _live["file"] = os.fdopen(os.dup(sys.stderr.fileno()), "w", errors="replace",
                                      encoding=getattr(sys.stderr, "encoding", None) or "utf-8")
        except (OSError, AttributeError, ValueError):  # a stderr without a descriptor (captured)
            _live["file"] = None
        console = Console(file=_live["file"], stderr=True, force_terminal=os.environ.get(MODE_ENV) == "bars" or None)
        _live["progress"] = Progress(*_columns(), console=console, redirect_stdout=False)
        _live["progress"].start()
    _live["open"] += 1
    return _live["progress"]


def _close_live() -> None:
    _live["open"] -= 1
    if _live["open"] <= 0 and _live["progress"] is not None:
        _live["progress"].stop()
        if _live["file"] is not None:
            _live["file"].close()
        _live.update(progress=None, open=0, file=None)


class Bar:
    """Progress of ``total`` units of work called ``what`` (see the module's docstring)."""

    def __init__(self, what: str, total: Optional[int] = None) -> None:
        self.what, self.total, self.count = what, total, 0
        self.t0 = time.monotonic()
        self._progress = _open_live() if interactive() else None
        self._depth = _live["open"] - 1 if self._progress is not None else 0
        self._task = self._progress.add_task(self._label(), total=total) if self._progress is not None else None

    def _label(self, item: str = "") -> str:
        return "  " * self._depth + self.what + (f": {item}" if item else "")

    def start(self, item: str) -> None:
        """Say what is being worked on now (a terminal's bar shows it)."""
        if self._progress is not None:
            self._progress.update(self._task, description=self._label(item))

    def set_total(self, total: Optional[int]) -> None:
        self.total = total
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def advance(self, n: int = 1) -> None:
        """Some work done, without a line of its own."""
        self.count += n
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def done(self, msg: str = "", n: int = 1) -> None:
        """One unit finished (``n`` units): advance, and print its line."""
        self.advance(n)
        of = f"/{self.total}" if self.total else ""
        text = f"{PREFIX} {self.what} {self.count}{of}" + (f": {msg}" if msg else "")
        if self._progress is not None:  # above the bars, where it stays
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(f"{text} ({self.times()})", file=sys.stderr, flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def times(self) -> str:
        """'12s elapsed, ~30s left' (the remaining time from the pace so far)."""
        elapsed = self.elapsed
        text = f"{clock(elapsed)} elapsed"
        if self.total and 0 < self.count < self.total:
            text += f", ~{clock(elapsed / self.count * (self.total - self.count))} left"
        return text

    def close(self) -> None:
        if self._progress is not None:
            if self._depth:  # a nested bar goes away; the outermost one stays, complete
                self._progress.remove_task(self._task)
            self._progress = None
            _close_live()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def bar(what: str, total: Optional[int] = None) -> Bar:
    return Bar(what, total)


def track(items: Iterable[Any], what: str, total: Optional[int] = None) -> Iterator[Any]:
    """Iterate with a bar that only advances (no line per item): images, batches, shards."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Bar(what, total) as b:
        for item in items:
            yield item
            b.advance()


@contextlib.contextmanager
def native_stderr_filtered(noise: Iterable[str]) -> Iterator[None]:
    """Drop the lines matching ``noise`` (regexes) that native code writes to file descriptor 2
    meanwhile (C++ libraries print before Python's logging exists); the others are written
    back. Off with --verbose."""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no usable descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, AttributeError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rx = re.compile("|".join(f"(?:{p})" for p in noise))
            kept = [ln for ln in capture.read().decode(errors="replace").splitlines(keepends=True) if not rx.search(ln)]
            if kept:
                os.write(2, "".join(kept).encode())
