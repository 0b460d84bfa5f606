"""Every matplotlib figure edgeqat draws: the Pareto plot (evaluate), the recommendation's
accuracy-vs-size plot per device (recommend), and the report's training curves, confusion
matrix and device budgets (report). matplotlib runs headless (Agg) and is imported only when a
figure is drawn. PNGs carry no version stamp unless noted, so the same inputs give the same bytes.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, NamedTuple

from edgeqat.io import atomic_path
from edgeqat.reporting.tables import SIZE_KEYS, pareto_front


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any) -> bytes:
    """``fig`` as PNG bytes (closed after)."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version stamp: the same bytes every run
    plt.close(fig)
    return buf.getvalue()


def pareto_plot(summary: dict[str, Any], dest: Any) -> None:
    """Accuracy vs size PNG of every variant, one panel per size measure (the flatbuffer, which
    pruning and clustering do not shrink, and gzip, which they do), each front joined by a line."""
    plt = _pyplot()
    vs = summary.get("variants", {})
    keys = [(k, what) for k, what in SIZE_KEYS if vs and all(k in r for r in vs.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.5), dpi=100, squeeze=False)
    for ax, (key, what) in zip(axes[0], keys):
        front = pareto_front(summary, key)
        # Labels alternate above and below their point (by size), so neighbours do not print over each other.
        for i, (name, r) in enumerate(sorted(vs.items(), key=lambda kv: (kv[1][key], kv[0]))):
            ax.scatter(r[key] / 1024, r["accuracy"], color="tab:red" if name in front else "tab:blue", zorder=3)
            ax.annotate(name, (r[key] / 1024, r["accuracy"]), textcoords="offset points",
                        xytext=(5, 5 if i % 2 == 0 else -11), fontsize=7)
        ax.margins(x=0.22, y=0.12)
        if len(front) > 1:
            ax.plot([vs[n][key] / 1024 for n in front], [vs[n]["accuracy"] for n in front],
                    color="tab:red", linewidth=1, zorder=2, label="Pareto front")
            ax.legend(loc="best")
        ax.set_xlabel(f"{what} size (KiB)")
        ax.set_ylabel("accuracy (LiteRT, test split)")
        ax.set_title(f"Accuracy vs {what} size")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no version stamp
    plt.close(fig)


class CandidatePoint(NamedTuple):
    """One candidate of a device's search, as its plot draws it."""

    name: str
    stored_bytes: int
    accuracy: float
    passed: bool


def candidates_plot(device: str, points: list[CandidatePoint], chosen: str | None, dest: Path) -> None:
    """The recommendation's accuracy-vs-stored-size plot of one device's candidates (o passes,
    x fails, red the chosen one). Saved with matplotlib's version stamp, as it always was."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for p in points:
        ax.scatter(p.stored_bytes / 1024, p.accuracy, marker="o" if p.passed else "x",
                   color="tab:red" if p.name == chosen else ("tab:green" if p.passed else "tab:gray"), zorder=3)
        ax.annotate(p.name, (p.stored_bytes / 1024, p.accuracy), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("stored size (KiB): Vela flash on Ethos-U, else the flatbuffer")
    ax.set_ylabel("accuracy on the device's runtime (validation split)")
    ax.set_title(f"{device}: candidates (o passes, x fails; red = chosen)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def curves_figure(histories: dict[str, Path]) -> Any | None:
    """Validation accuracy per epoch of each training run that wrote a history."""
    plt = _pyplot()
    rows = {}
    for name, path in histories.items():
        if path.is_file():
            with open(path, newline="") as fh:
                pts = [(int(r["epoch"]), float(r["val_accuracy"])) for r in csv.DictReader(fh) if r.get("val_accuracy")]
            if pts:
                rows[name] = pts
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for name, pts in rows.items():
        ax.plot([e for e, _ in pts], [a for _, a in pts], marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Training curves")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(csv_path: Path, class_names: list[str], variant: str) -> Any | None:
    if not csv_path.is_file():
        return None
    plt = _pyplot()
    import numpy as np

    index = {c: i for i, c in enumerate(class_names)}
    m = np.zeros((len(class_names), len(class_names)), dtype=int)
    with open(csv_path, newline="") as fh:
        for r in csv.DictReader(fh):
            m[index[r["actual"]], index[r["predicted"]]] += 1
    size = min(7.0, 2.5 + 0.35 * len(class_names))
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
    ax.imshow(m, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90 if len(class_names) > 10 else 0, fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    if len(class_names) <= 20:
        for i in ticks:
            for j in ticks:
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"Confusion matrix: {variant}")
    fig.tight_layout()
    return fig


def devices_figure(devices: dict[str, dict[str, Any]], budget_rows: dict[str, list[dict]]) -> Any | None:
    """Per device, the share of each budget the model uses (a bar past 100 % is a miss)."""
    rows = [(f"{dev}: {b['budget']}", b["used"] / b["available"], bool(devices[dev].get("passed")))
            for dev in devices for b in budget_rows.get(dev, []) if b["available"]]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.32 * len(rows)), dpi=100)
    y = range(len(rows))
    fracs = [min(f, 2.0) * 100 for _, f, _ in rows]
    colors = ["tab:green" if f < 0.8 else "tab:orange" if f <= 1.0 else "tab:red" for _, f, _ in rows]
    ax.barh(list(y), fracs, color=colors)
    ax.set_yticks(list(y), [label for label, _, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(100, color="black", linewidth=1)
    ax.set_xlabel("% of the device's budget (100 % = the limit)")
    ax.set_title("Device budgets used by the validated model")
    fig.tight_layout()
    return fig
