"""What commands print on stdout: rich tables for people, ``--json`` for programs.

A table fits the width (the terminal's, or ``COLUMNS``; 100 when stdout is not a terminal):
columns marked ``wide`` show only with ``--wide``, then, while the table is still too wide,
those with a ``drop`` rank go (highest first); long text folds or is cut with an ellipsis.
With ``--wide`` every column shows at its natural width, however wide the table gets. rich
is imported only when a command prints (``edgeqat --help`` stays fast).
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
    text: bool = False  # free text: folds (or, with ellipsis, is cut) to what width is left
    ellipsis: bool = False
    wide_header: Optional[str] = None  # a longer header for --wide
    max_width: Optional[int] = None  # without --wide
    drop: int = 0  # > 0: left out when the table does not fit, highest first


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def console(wide: bool = False) -> Any:
    from rich.console import Console

    width = NO_WRAP_WIDTH if wide else None
    if width is None and not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        width = PIPED_WIDTH
    return Console(width=width, highlight=False, soft_wrap=False)


def _least_width(c: Col, natural: int) -> int:
    """What a column needs at the least: text folds, an ellipsis cuts."""
    if c.ellipsis:
        return min(natural, 8)
    return min(natural, c.max_width or 20) if c.text else natural


def table(cols: Sequence[Col], rows: Iterable[Sequence[Any]], wide: bool = False, title: Optional[str] = None) -> Any:
    """A rich Table of the columns shown at this width; ``rows`` hold a cell for every column."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table

    rows = [["–" if row[i] is None else str(row[i]) for i in range(len(cols))] for row in rows]
    shown = [i for i, c in enumerate(cols) if wide or not c.wide]
    natural = {i: max([cell_len(cols[i].header), *(cell_len(r[i]) for r in rows)]) for i in shown}
    cap = {}
    if not wide:
        room = console().width

        def need() -> int:
            return sum(_least_width(cols[i], natural[i]) for i in shown) + GAP * (len(shown) - 1)

        while need() > room and any(cols[i].drop for i in shown):
            shown.remove(max((i for i in shown if cols[i].drop), key=lambda i: cols[i].drop))
        # an ellipsis column gets what the others leave (rich would narrow every column alike)
        cut = [i for i in shown if cols[i].ellipsis]
        if cut:
            left = room - sum(natural[i] for i in shown if i not in cut) - GAP * (len(shown) - 1)
            cap = {i: min(max(8, left // len(cut)), cols[i].max_width or left) for i in cut}
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False, title=title,
              title_justify="left")
    for i in shown:
        c = cols[i]
        t.add_column((c.wide_header or c.header) if wide else c.header, justify=c.justify,  # type: ignore[arg-type]
                     no_wrap=wide or not c.text or c.ellipsis, overflow="ellipsis" if c.ellipsis and not wide else "fold",
                     max_width=None if wide else cap.get(i, c.max_width))
    for row in rows:
        t.add_row(*(row[i] for i in shown))
    return t


def show(*renderables: Any, wide: bool = False) -> None:
    """Print tables and text (a str prints as it is: no markup) on stdout."""
    from rich.text import Text

    out = console(wide)
    for r in renderables:
        out.print(Text(r) if isinstance(r, str) else r)
