"""prepare: raw source -> resized, stratified, sharded train/val/test/calib splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.config import PrepareConfig
from edgeqat.data.base import RecordSource
from edgeqat.data.prepared import write_prepared
from edgeqat.data.sources import open_source
from edgeqat.data.split import stratified_split
from edgeqat.catalog.datasources import needs_path
from edgeqat.errors import DataError
from edgeqat.io import log


def make_splits(src: RecordSource, cfg: PrepareConfig) -> tuple[dict[str, np.ndarray], str]:
    """(indices per split, how the test split was chosen). With ``test_split: auto`` and a
    source that ships its own test files, those are the test split and val comes from
    the other files, so a model trained on the official train split is never scored on
    images it has seen; otherwise every record is pooled and split by the fractions."""
    parts = src.parts()
    designated = [p for p in parts if p[3]]
    if cfg.test_split == "auto" and designated and len(designated) < len(parts):
        test = np.concatenate([np.arange(a, b) for _, a, b, t in parts if t])
        pool = np.concatenate([np.arange(a, b) for _, a, b, t in parts if not t])
        inner = stratified_split(src.labels[pool], cfg.val_fraction, 0.0, cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        splits = {"train": pool[inner["train"]], "val": pool[inner["val"]], "test": rng.permutation(test)}
        log(f"prepare: test split = the source's own test file(s) {', '.join(p[0] for p in designated)} "
            f"({len(test)} images; prepare.test_fraction unused); val from the training files "
            "(prepare.test_split: pooled re-splits everything)")
        return splits, "designated"
    return stratified_split(src.labels, cfg.val_fraction, cfg.test_fraction, cfg.seed), "random"


def split_files(src: RecordSource, splits: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """{split: {file or folder: images it gave}}: which files formed each split."""
    parts = src.parts()
    starts = np.array([a for _, a, _, _ in parts])
    out: dict[str, dict[str, int]] = {}
    for name, idx in splits.items():
        k = np.searchsorted(starts, idx, side="right") - 1
        counts = np.bincount(k, minlength=len(parts)) if len(idx) else np.zeros(len(parts), int)
        out[name] = {parts[j][0]: int(n) for j, n in enumerate(counts) if n}
    return out


def warn_unmeasured_classes(src: RecordSource, splits: dict[str, np.ndarray]) -> None:
    """A class with too few images for every split trains but is never scored: say so."""
    counts = {s: np.bincount(src.labels[splits[s]], minlength=len(src.class_names)) for s in ("val", "test")}
    total = np.bincount(src.labels, minlength=len(src.class_names))
    for k, cls in enumerate(src.class_names):
        missing = [s for s in ("val", "test") if counts[s][k] == 0]
        if missing:
            log(f"prepare: warning: class {cls!r} has {total[k]} image(s), none in the {' or '.join(missing)} split: "
                "its accuracy is never measured; add images to it")


def prepare(cfg: PrepareConfig, out_dir: str | Path) -> dict[str, Any]:
    if not needs_path(cfg.source) and cfg.path not in ("", "data/raw"):
        log(f"prepare: source {cfg.source!r} is built in; prepare.path={cfg.path!r} is not used")
    with open_source(cfg.source, cfg.path, settings=cfg) as src:
        log(f"prepare: {len(src)} images in {len(src.class_names)} classes from {src.origin}")
        splits, how = make_splits(src, cfg)
        # Calibration for PTQ: a class-mixed subset of the training split (already shuffled).
        splits["calib"] = splits["train"][: cfg.calibration_size]
        for name in ("val", "test"):
            if len(splits[name]) == 0:
                raise DataError(
                    f"{src.origin}: {len(src)} images are too few to fill the {name} split; "
                    f"add data or raise prepare.{name}_fraction"
                )
        files = split_files(src, splits)
        warn_unmeasured_classes(src, splits)
        meta = write_prepared(src, out_dir, cfg.image_size, cfg.channels, cfg.normalize, splits, cfg.shard_size)
    metrics = {
        "num_classes": len(meta["class_names"]),
        "num_train": meta["sizes"]["train"],
        "num_val": meta["sizes"]["val"],
        "num_test": meta["sizes"]["test"],
        "num_calib": meta["sizes"]["calib"],
        "image_shape": meta["image_shape"],
        "test_split": how,
        "split_files": files,
        "counts": meta["counts"],
        "data_sha256": meta["data_sha256"],
        "copies_of_train": meta["copies_of_train"],
    }
    return metrics
