"""The recommendation write-up: the recommend step's report dict -> ``recommendation.md``, and
the folder it sits in (``reports/recommendation/``: that JSON, the Markdown and one
accuracy-vs-size plot per device). Pure presentation: the search is in :mod:`edgeqat.recommend`
and the step that runs it in :mod:`edgeqat.steps.recommend`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeqat.devices.validate import verdict_line
from edgeqat.io import atomic_path, write_json, write_text
from edgeqat.recommend.search import stored
from edgeqat.reporting.plots import CandidatePoint, candidates_plot

SPLIT_NAMES = {"val": "validation", "test": "test"}


def latency_cell(row: dict[str, Any]) -> str:
    """The latency a candidate was judged on, and where it came from (measured or estimated)."""
    ms = row.get("latency_ms", row.get("latency_ms_estimate"))
    if ms is None:
        return "–"
    return f"{ms:.3g} ({'measured' if row.get('latency_source') == 'measured' else 'est.'})"


def _cell(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def recommendation_markdown(report: dict[str, Any]) -> str:
    """recommendation.md: per device, the choice and why, its test-split verdict, every candidate
    measured on the search split and what was skipped."""
    if not report.get("enabled", True):
        return "# Recommendation\n\nDisabled (`recommend.enabled: false`); run `edgeqat recommend --device ...`.\n"
    splits = report.get("splits", {"search": "val", "reported": "test"})
    lines = ["# Recommendation per device", "",
             f"Accuracy budget: at most {report['budget_accuracy_drop']:.3f} below the FP32 Keras model; "
             f"search bounded by {report['max_minutes']:g} min. Stored bytes: the flatbuffer on LiteRT/TFLM devices, "
             "Vela's encoded flash on Ethos-U.", "",
             f"Candidates are measured, budgeted and ranked on the **{SPLIT_NAMES[splits['search']]}** split; the "
             f"chosen model's accuracy and verdict below come from validating it on its device on the "
             f"**{SPLIT_NAMES[splits['reported']]}** split, which the choice never saw.", ""]
    for dev, r in report["devices"].items():
        lines += [f"## {dev} — {r['title']}", "", f"**{r['chosen'] or 'no model fits'}** — {r['reason']}", ""]
        t = r.get("test")
        if t:
            lines += [f"On the test split: accuracy {t['accuracy']:.4f} ({t['accuracy_drop']:+.4f} vs the FP32 "
                      f"model's {t['reference_accuracy']:.4f}); device verdict: {verdict_line(t)}.", ""]
        lines += [f"Candidates ({SPLIT_NAMES[splits['search']]} split):", "",
                  "| candidate | verdict | accuracy | drop | stored bytes | arena bytes | latency ms | reasons |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in r["candidates"]:
            lines.append(f"| {c['candidate']} | {c['verdict']} | {_cell(c['accuracy'], '.4f')} | "
                         f"{_cell(c['accuracy_drop'], '+.4f')} | {stored(c):,} | {_cell(c['arena_bytes'], ',')} | "
                         f"{latency_cell(c)} | {'; '.join(c['reasons']) or '–'} |")
        if r["skipped"]:
            lines += ["", "Skipped without making or running them:"]
            lines += [f"- {s['candidate']}: {s['why']}" for s in r["skipped"]]
        lines.append("")
    return "\n".join(lines)


def candidate_points(r: dict[str, Any]) -> list[CandidatePoint]:
    """The candidates of one device's result that have an accuracy to plot."""
    return [CandidatePoint(c["candidate"], stored(c), c["accuracy"], c["verdict"] == "pass")
            for c in r["candidates"] if c["accuracy"] is not None]


def write_reports(report_dir: str | Path, report: dict[str, Any]) -> None:
    """``report_dir`` as one atomic folder: recommendation.{json,md} and ``<device>.png`` each."""
    with atomic_path(report_dir, is_dir=True) as tmp:
        write_json(tmp / "recommendation.json", report)
        write_text(tmp / "recommendation.md", recommendation_markdown(report))
        for dev, r in report["devices"].items():
            candidates_plot(dev, candidate_points(r), r["chosen"], tmp / f"{dev}.png")
