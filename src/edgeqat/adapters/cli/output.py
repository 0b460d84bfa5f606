"""What commands print on stdout: rich tables for people, ``--json`` for programs.

A table fits the width (the terminal's, or ``COLUMNS``; 100 when stdout is not a terminal)
without ever cutting a number or a name: columns marked ``wide`` show only with ``--wide``;
while the table is still too wide, whole columns with a ``drop`` rank go (highest first); free
text (``text``) wraps between words. One line under the table names what is not shown and
that ``--wide`` shows it. A table that still cannot fit is printed whole, wider than the
terminal, rather than cut. rich is imported only when a command prints (``edgeqat --help``
stays fast).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import typer

JsonOpt = typer.Option(False, "--json", help="Print the result as JSON (for scripts).")
WideOpt = typer.Option(False, "--wide", help="Every column, however wide the table gets.")
NO_WRAP_WIDTH = 10_000  # --wide: a console this wide never folds a cell
PIPED_WIDTH = 100  # stdout not a terminal and no COLUMNS (rich would say 80)
GAP = 2  # between two columns


@dataclass(frozen=True)
class Col:
    header: str
    justify: str = "left"
    wide: bool = False  # only with --wide
    text: bool = False  # free text: wraps between words to what width is left
    wide_header: Optional[str] = None  # a longer header for --wide
    drop: int = 0  # > 0: left out when the table does not fit, highest first


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def console(wide: bool = False) -> Any:
    from rich.console import Console

    width = NO_WRAP_WIDTH if wide else None
    if width is None and not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        width = PIPED_WIDTH
    return Console(width=width, highlight=False, soft_wrap=False)


def _longest_word(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(w) for w in text.split()), default=0)


def _least_width(c: Col, header: str, cells: list[str]) -> int:
    """What a column needs at the least: a name or a number its whole width, free text its
    longest word."""
    from rich.cells import cell_len

    if c.text:
        return max([_longest_word(header), *(_longest_word(x) for x in cells)])
    return max([cell_len(header), *(cell_len(x) for x in cells)])


def table(cols: Sequence[Col], rows: Iterable[Sequence[Any]], wide: bool = False, title: Optional[str] = None) -> Any:
    """A rich renderable: the table of the columns shown at this width (``rows`` hold a cell for
    every column), and the line that names the columns left out."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rows = [["–" if row[i] is None else str(row[i]) for i in range(len(cols))] for row in rows]
    header = {i: (c.wide_header or c.header) if wide else c.header for i, c in enumerate(cols)}
    shown = [i for i, c in enumerate(cols) if wide or not c.wide]
    least = {i: _least_width(cols[i], header[i], [r[i] for r in rows]) for i in range(len(cols))}

    def need() -> int:
        return sum(least[i] for i in shown) + GAP * (len(shown) - 1)

    if not wide:
        room = console().width
        while need() > room and any(cols[i].drop for i in shown):
            shown.remove(max((i for i in shown if cols[i].drop), key=lambda i: cols[i].drop))
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False, title=title,
              title_justify="left")
    for i in shown:
        c = cols[i]
        t.add_column(header[i], justify=c.justify, no_wrap=not c.text, overflow="fold",  # type: ignore[arg-type]
                     min_width=least[i])
    for row in rows:
        t.add_row(*(row[i] for i in shown))
    hidden = [cols[i].wide_header or cols[i].header for i in range(len(cols)) if i not in shown]
    if not hidden:
        return _Whole(t, need())
    return Group(_Whole(t, need()), Text(f"--wide adds: {', '.join(hidden)}", style="dim"))


class _Whole:
    """A table printed at least ``width`` wide: rich would otherwise shrink (cut) its columns."""

    def __init__(self, inner: Any, width: int) -> None:
        self.inner, self.width = inner, width

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield from console.render(self.inner, options.update(width=max(options.max_width, self.width)))

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        return Measurement.get(console, options.update(width=max(options.max_width, self.width)), self.inner)


def show(*renderables: Any, wide: bool = False) -> None:
    """Print tables and text (a str prints as it is: no markup) on stdout."""
    from rich.text import Text

    out = console(wide)
    for r in renderables:
        out.print(Text(r) if isinstance(r, str) else r, crop=False)  # a table too wide for the terminal wraps there, whole
