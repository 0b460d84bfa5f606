"""Deterministic stratified train/val/test split, from labels alone."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Return index arrays per split. Each class is split in the same proportions
    (every class keeps at least one training image); each split is then shuffled so
    consecutive records mix classes. Same labels + seed -> same split."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        n = len(idx)
        n_test = min(int(round(n * test_fraction)), max(n - 1, 0))
        n_val = min(int(round(n * val_fraction)), max(n - 1 - n_test, 0))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {name: rng.permutation(np.concatenate(chunks)) for name, chunks in parts.items()}
