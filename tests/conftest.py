"""Shared fixtures: tiny synthetic data sets and a tiny prepared split.

Images carry a class-dependent bright square on noise, so even a tiny model learns them
in a couple of epochs; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# No live MLflow run from the stages tests run (each would open a store: seconds per stage);
# the tests of the live run set EDGEQAT_LIVE_RUN=1 for the processes they start.
os.environ.setdefault("EDGEQAT_LIVE_RUN", "0")
# pytest-xdist's workers get COLUMNS=80 from their controller; a serial run has none, and the
# tables' width rules (100 columns when piped) are pinned as a user's pipe sees them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)


def synthetic_images(n: int, size: int = 16, classes: int = 4, channels: int = 1, seed: int = 0):
    """uint8 (n, size, size[, channels]) images and int labels: class k lights quadrant k."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(n, size, size, channels)).astype(np.uint8)
    half = size // 2
    for i, k in enumerate(y):
        r, c = divmod(int(k) % 4, 2)
        x[i, r * half : (r + 1) * half, c * half : (c + 1) * half, :] += 150
    return (x[..., 0] if channels == 1 else x), y.astype(np.int64)


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "tiny.npz"
    x, y = synthetic_images(96)
    np.savez(path, x=x, y=y, class_names=np.array(["tl", "tr", "bl", "br"]))
    return path


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory, tiny_npz) -> Path:
    from edgeqat.config import PrepareConfig
    from edgeqat.steps.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "data"
    prepare(PrepareConfig(source="npz", path=str(tiny_npz), image_size=16, calibration_size=16, shard_size=32), out)
    return out


@pytest.fixture(scope="session")
def comp(tmp_path_factory, tiny_prepared):
    """fp32/qat/mixed/pqat/channel-pruned models and their .tflite variants of a tiny untrained
    model (tests/compressed_chain.py), shared by the compression and recommendation tests."""
    from compressed_chain import build_comp

    return build_comp(tmp_path_factory, tiny_prepared)
