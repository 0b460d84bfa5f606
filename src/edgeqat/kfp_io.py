"""What the KFP components need besides the steps: file layout and metric shapes.

The components stay glue: they call these helpers and the step functions. Nothing here
imports kfp; artifacts are passed in as plain paths or objects with ``log_metric``.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from edgeqat.steps.track import flatten

# File names inside folder-shaped artifacts, the same as the DVC layout uses.
FP32_FILE = "fp32.keras"
QAT_FILE = "qat.h5"
MIXED_FILE = "mixed.h5"
PQAT_FILE = "pqat.h5"
CHANNEL_PRUNED_FILE = "channel_pruned_qat.h5"


def log_metrics(artifact: Any, metrics: Mapping[str, Any]) -> int:
    """Every numeric leaf of a step's metrics dict -> ``artifact.log_metric(dotted key, value)``."""
    n = 0
    for key, value in sorted(flatten(dict(metrics)).items()):
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)):
            artifact.log_metric(key, value)
            n += 1
    return n


def confusion_matrix(csv_path: str | Path, class_names: list[str] | None = None) -> tuple[list[str], list[list[int]]]:
    """``actual,predicted`` rows (evaluate's confusion CSV) -> (categories, counts[actual][predicted])."""
    with open(csv_path, newline="") as fh:
        rows = [(r["actual"], r["predicted"]) for r in csv.DictReader(fh)]
    cats = list(class_names) if class_names else sorted({c for pair in rows for c in pair})
    index = {c: i for i, c in enumerate(cats)}
    matrix = [[0] * len(cats) for _ in cats]
    for actual, predicted in rows:
        matrix[index[actual]][index[predicted]] += 1
    return cats, matrix


def _place(src: str | Path, dest: Path) -> None:
    src = Path(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=False, dirs_exist_ok=True)
    elif src.is_file():
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)


def assemble_workspace(root: str | Path, files: Mapping[str, str | Path | None]) -> Path:
    """Lay artifacts out as the DVC path does, so ``track`` reads the same tree either way.

    ``files`` maps a relative destination (``metrics/qat.json``, ``models/tflite``) to an
    artifact path; ``None`` entries (an optional input not produced) are skipped.
    """
    root = Path(root)
    for rel, src in files.items():
        if src is not None and str(src):
            _place(src, root / rel)
    for sub in ("metrics", "plots", "models", "reports"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root
