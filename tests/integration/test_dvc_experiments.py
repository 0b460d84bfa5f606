"""`dvc exp run -S` switches the data source the DVC way (slow: a whole pipeline run)."""

from __future__ import annotations

import json

import pytest

from conftest import synthetic_images
from edgeqat.data.idx import write_idx
from edgeqat.stages import STAGES
from integration.conftest import BIN, make_pipeline_repo, run, stages_run, tiny_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_exp_run_switches_to_idx_files(tmp_path):
    repo = make_pipeline_repo(tmp_path / "proj", tiny_params())
    idx = repo / "data" / "site-idx"
    idx.mkdir()
    x, y = synthetic_images(120, size=12, classes=3)
    write_idx(x, y, idx / "train", gz=True)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline"], repo)

    out = run([str(BIN / "dvc"), "exp", "run", "-S", "prepare.source=idx", "-S", "prepare.path=data/site-idx"], repo)
    assert set(stages_run(out.stdout)) == {s.name for s in STAGES}  # a new data source re-runs every stage
    meta = json.loads((repo / "data" / "prepared" / "meta.json").read_text())
    assert meta["class_names"] == ["0", "1", "2"] and sum(meta["sizes"][s] for s in ("train", "val", "test")) == 120
    shown = run([str(BIN / "dvc"), "exp", "show", "--json"], repo)
    assert "prepare.source" in shown.stdout or "idx" in shown.stdout
