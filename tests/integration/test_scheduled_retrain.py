"""The scheduled path (`edgeqat ci run --refresh-data`, what retrain.yml runs) on real parts: a
data repository where the data team `dvc add`s and pushes new images, a project that brings the
data in with `dvc import`, and a real `mlflow server`. When the data repository gained images,
the scheduled run retrains on them and registers a new challenger. (`dvc import-url` data is
refreshed by the same `dvc update`: tests/unit/test_ci_entry.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import synthetic_images
from integration.conftest import BIN, make_pipeline_repo, run, tiny_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GIT = ["git", "-c", "user.name=edgeqat test", "-c", "user.email=test@edgeqat.invalid"]
MODEL = "scheduled-classifier"


def _dvc(repo, *args, env=None):
    return run([str(BIN / "dvc"), *args], repo, env)


def _data_repo(root):
    """A git + DVC repository holding the images, with its own DVC remote."""
    repo = root / "data-repo"
    repo.mkdir()
    run(["git", "init", "-q", "--initial-branch=main"], repo)
    _dvc(repo, "init", "-q")
    _dvc(repo, "config", "core.analytics", "false")
    _dvc(repo, "remote", "add", "-d", "store", str(root / "data-remote"))
    run([*GIT, "commit", "-q", "-am", "dvc init"], repo)
    return repo


def _publish_images(repo, n, seed):
    """What the data team does: dvc add the new images, push them, commit the pointer."""
    x, y = synthetic_images(n, seed=seed)
    np.savez(repo / "images.npz", x=x, y=y, class_names=np.array(["tl", "tr", "bl", "br"]))
    _dvc(repo, "add", "images.npz")
    _dvc(repo, "push")
    run([*GIT, "add", "images.npz.dvc", ".gitignore"], repo)
    run([*GIT, "commit", "-q", "-m", f"{n} images"], repo)


def test_a_scheduled_run_retrains_on_images_the_data_repository_gained(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    data = _data_repo(tmp_path)
    _publish_images(data, 240, seed=1)
    proj = make_pipeline_repo(tmp_path / "proj", tiny_params(**{
        "prepare.source": "npz", "prepare.path": "data/raw/images.npz", "track.experiment": "scheduled",
        "register.model_name": MODEL, "cluster.epochs": 1, "cluster.qat_epochs": 1}))
    _dvc(proj, "import", str(data), "images.npz", "-o", "data/raw/images.npz")
    run([str(BIN / "edgeqat"), "dvc", "write"], proj)
    run([*GIT, "add", "-A"], proj)
    run([*GIT, "commit", "-q", "-m", "project importing the data repository"], proj)
    env = {"MLFLOW_TRACKING_URI": mlflow_server}

    def scheduled_run():
        proc = run([str(BIN / "edgeqat"), "ci", "run", "--refresh-data", "--trigger", "schedule"], proj, env, check=False)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return (proj / "ci-report.md").read_text()

    first = scheduled_run()
    assert "Data refreshed: data/raw/images.npz.dvc" in first
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    v1 = client.get_model_version_by_alias(MODEL, "challenger")

    _publish_images(data, 320, seed=2)  # the data repository gained 80 images
    second = scheduled_run()
    assert "prepare" in second.split("Stages run:")[1].split("\n")[0], second
    v2 = client.get_model_version_by_alias(MODEL, "challenger")
    assert int(v2.version) == int(v1.version) + 1
    assert v2.tags["data_sha256"] != v1.tags["data_sha256"]
    prepared = yaml.safe_load((proj / "metrics" / "prepare.json").read_text())
    assert sum(prepared[k] for k in ("num_train", "num_val", "num_test")) == 320
    # the refreshed import pointer is committed with the results
    committed = run(["git", "show", "--stat", "--format=%s", "HEAD"], proj).stdout
    assert "edgeqat ci (schedule)" in committed and "data/raw/images.npz.dvc" in committed
