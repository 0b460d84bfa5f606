"""`edgeqat data add`: a data set -> DVC, params.yaml chosen from its images, committed; what it
chooses for each kind of data; what it refuses. Real git and DVC in a scratch repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import synthetic_images
from edgeqat.config import set_params_text
from edgeqat.data.describe import MAX_IMAGE_SIZE, describe
from edgeqat.data.idx import write_idx
from edgeqat.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def images(dest: Path, classes: dict[str, int], size=(64, 64), mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, n in classes.items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = size if isinstance(size, tuple) else size(i)
            arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            if mode == "gray-as-rgb":
                arr[..., 1] = arr[..., 2] = arr[..., 0]
            Image.fromarray(arr[..., 0] if mode == "L" else arr).save(dest / name / f"{i}.png")
    return dest


def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **GIT_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def repo(tmp_path) -> Path:
    """A project as a clone has it: params.yaml, data/raw with its README in git, DVC initialised."""
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "README.md").write_text("put your data here\n")
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    sh(["git", "init", "-q"], tmp_path)
    sh(["git", "add", "-A"], tmp_path)
    sh(["git", "commit", "-qm", "project"], tmp_path)
    sh(["dvc", "init", "-q"], tmp_path)
    sh(["git", "commit", "-qm", "dvc"], tmp_path)
    return tmp_path


# --- what it chooses ---------------------------------------------------------------------------


def test_an_rgb_folder_gives_its_size_and_three_channels(tmp_path):
    d = describe(images(tmp_path / "raw", {"a": 4, "b": 4, "c": 4}))
    assert (d.source, d.classes, d.images, d.image_size, d.channels) == ("folder", ["a", "b", "c"], 12, 64, 3)
    assert d.why == ["images are 64x64", "colour (12 of 12 sampled images)"]


def test_grayscale_saved_as_rgb_is_one_channel(tmp_path):
    assert describe(images(tmp_path / "raw", {"a": 3, "b": 3}, size=(40, 40), mode="gray-as-rgb")).channels == 1
    assert describe(images(tmp_path / "gray", {"a": 3, "b": 3}, size=(40, 40), mode="L")).channels == 1


def test_mixed_sizes_take_the_median_short_side_and_big_photos_are_capped(tmp_path):
    d = describe(images(tmp_path / "mixed", {"a": 3, "b": 3}, size=lambda i: [(30, 50), (48, 60), (64, 64)][i]))
    assert d.image_size == 48 and "image sizes vary" in d.why[0]
    big = describe(images(tmp_path / "big", {"a": 2, "b": 2}, size=(300, 400)))
    assert big.image_size == MAX_IMAGE_SIZE and "capped" in big.why[1]


def test_idx_and_npz_are_recognised(tmp_path):
    x, y = synthetic_images(60, size=28, classes=3)
    (tmp_path / "idx").mkdir()
    write_idx(x, y, tmp_path / "idx" / "train", gz=True)
    d = describe(tmp_path / "idx")
    assert (d.source, d.image_size, d.channels, d.images) == ("idx", 28, 1, 60)
    np.savez(tmp_path / "set.npz", x=x, y=y)
    assert describe(tmp_path / "set.npz").source == "npz"


def test_what_prepare_would_refuse_is_refused_naming_the_file(tmp_path):
    root = images(tmp_path / "raw", {"a": 2, "b": 2})
    (root / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        describe(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        describe(tmp_path / "empty")


# --- params.yaml keeps its comments ----------------------------------------------------------


def test_params_are_set_in_place_keeping_comments():
    text = (REPO / "params.yaml").read_text()
    out = set_params_text(text, {"prepare.source": "folder", "prepare.image_size": 64, "prepare.channels": 3})
    assert "  source: folder          # digits (built in) | idx | folder | npz" in out.splitlines()
    assert yaml.safe_load(out)["prepare"]["image_size"] == 64
    assert len(out.splitlines()) == len(text.splitlines())  # only those lines changed
    assert sum(a != b for a, b in zip(out.splitlines(), text.splitlines())) == 3
    with pytest.raises(ConfigError, match="prepare.image_size"):
        set_params_text(text, {"prepare.image_size": 4})  # below its minimum: refused before any write


# --- the command ---------------------------------------------------------------------------------


def test_data_add_versions_selects_and_commits(repo):
    images(repo / "data" / "raw", {"cat": 5, "dog": 5, "owl": 5})
    out = sh(["edgeqat", "data", "add", "data/raw"], repo)
    assert "data/raw: folder, 3 classes (cat, dog, owl), 15 images; images are 64x64; colour" in out.stdout
    assert "prepare.source=folder, prepare.path=data/raw, prepare.image_size=64, prepare.channels=3" in out.stdout
    p = yaml.safe_load((repo / "params.yaml").read_text())["prepare"]
    assert (p["source"], p["path"], p["image_size"], p["channels"]) == ("folder", "data/raw", 64, 3)
    assert sh(["git", "status", "--porcelain"], repo).stdout == ""  # everything committed: dvc exp run can start
    committed = sh(["git", "show", "--name-status", "--format=%s", "HEAD"], repo).stdout
    assert committed.startswith("data: data/raw (folder, 3 classes, 15 images) under DVC")
    assert {"A\tdata/raw.dvc", "A\tdata/.gitignore", "M\tparams.yaml", "D\tdata/raw/README.md"} <= set(committed.splitlines())
    assert "nfiles: 16" in (repo / "data" / "raw.dvc").read_text()  # 15 images and the README, now DVC's
    # more images later: the same command records the new version
    images(repo / "data" / "raw", {"emu": 5}, seed=1)
    again = sh(["edgeqat", "data", "add", "data/raw", "--image-size", "32"], repo)
    assert "4 classes" in again.stdout and yaml.safe_load((repo / "params.yaml").read_text())["prepare"]["image_size"] == 32
    assert sh(["git", "status", "--porcelain"], repo).stdout == ""


def test_data_add_refuses_staged_work_a_path_outside_and_bad_data(repo, tmp_path_factory):
    images(repo / "data" / "raw", {"a": 2, "b": 2})
    (repo / "notes.txt").write_text("mine\n")
    sh(["git", "add", "notes.txt"], repo)
    staged = sh(["edgeqat", "data", "add", "data/raw"], repo, check=False)
    assert staged.returncode == 2 and "notes.txt" in staged.stderr and "Traceback" not in staged.stderr
    sh(["git", "reset", "-q"], repo)
    outside = images(tmp_path_factory.mktemp("elsewhere"), {"a": 2, "b": 2})
    refused = sh(["edgeqat", "data", "add", str(outside)], repo, check=False)
    assert refused.returncode == 2 and "outside the repository" in refused.stderr and "cp -r" in refused.stderr
    (repo / "data" / "raw" / "b" / "1.png").write_bytes(b"broken")
    bad = sh(["edgeqat", "data", "add", "data/raw"], repo, check=False)
    assert bad.returncode == 2 and "1.png" in bad.stderr
    # nothing half-done: git still tracks the README, DVC was not run, params.yaml untouched
    assert sh(["git", "ls-files", "data/raw"], repo).stdout.strip() == "data/raw/README.md"
    assert not (repo / "data" / "raw.dvc").exists()
    assert (repo / "params.yaml").read_text() == (REPO / "params.yaml").read_text()
