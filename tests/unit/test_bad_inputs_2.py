"""Bad inputs, second round (issue 27): each through the real `edgeqat` command.

Same contract as test_bad_inputs.py (exit 2, one error line naming what is at fault, no
traceback, nothing new in the workspace), for hostile names and sizes: an output path that is
the source data or the workspace, YAML that bombs or repeats a key, labels that would
allocate billions of names, images decoded wrongly, secrets in URLs, and the smaller defects
of issue 27's item 9. Server-based cases (a registry version written by an attacker, slow
clients, two receivers) are in tests/integration/test_hostile.py.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO
from test_bad_inputs import BIN, edgeqat, gray_images, image_folder, npz, params, prepare_with, refused, tree

# --- outputs never replace what is not theirs ----------------------------------------


def _prepare_to(ws: Path, out: str) -> subprocess.CompletedProcess:
    return edgeqat("stage", "prepare", "--params", "params.yaml", "--prepared", out, "--prepare-metrics",
                   "m/prepare.json", cwd=ws)


@pytest.fixture
def folder_ws(tmp_path) -> Path:
    image_folder(tmp_path / "raw")
    params(tmp_path, prepare={"source": "folder", "path": "raw", "image_size": 8, "calibration_size": 4})
    return tmp_path


def test_prepare_into_its_own_source_folder_is_refused(folder_ws):
    before, images = tree(folder_ws), sorted((folder_ws / "raw").rglob("*.png"))
    refused(_prepare_to(folder_ws, "raw"), "output prepared", "raw", "is the input prepare.path", ws=folder_ws,
            before=before)
    assert sorted((folder_ws / "raw").rglob("*.png")) == images


@pytest.mark.parametrize("out", [".", "$PWD", ".."], ids=["dot", "absolute-workspace", "parent"])
def test_prepare_into_the_workspace_is_refused(folder_ws, out):
    out = str(folder_ws) if out == "$PWD" else out
    before = tree(folder_ws)
    refused(_prepare_to(folder_ws, out), "output prepared", "is the workspace", ws=folder_ws, before=before)
    assert (folder_ws / "params.yaml").is_file()


def test_prepare_inside_its_source_folder_is_refused(folder_ws):
    before = tree(folder_ws)
    refused(_prepare_to(folder_ws, "raw/prepared"), "raw/prepared", "is inside the input prepare.path",
            ws=folder_ws, before=before)


def test_an_output_replacing_the_params_file_is_refused(folder_ws):
    before = tree(folder_ws)
    proc = edgeqat("stage", "prepare", "--params", "params.yaml", "--prepared", "prep", "--prepare-metrics",
                   "params.yaml", cwd=folder_ws)
    refused(proc, "output prepare_metrics", "params.yaml", "the input --params", ws=folder_ws, before=before)


def test_a_folder_no_stage_wrote_is_never_replaced(folder_ws):
    mine = folder_ws / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = tree(folder_ws)
    refused(_prepare_to(folder_ws, "notes"), "notes", "not written by an edgeqat stage", ws=folder_ws, before=before)
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_a_stage_may_replace_its_own_output_folder(folder_ws):
    """The table's path (a DVC out) and a folder it wrote elsewhere (the marker) are its own."""
    for out in ("data/prepared", "elsewhere", "elsewhere"):
        proc = _prepare_to(folder_ws, out)
        assert proc.returncode == 0, proc.stderr
    assert (folder_ws / "elsewhere" / ".edgeqat-output").is_file()
    assert not (folder_ws / "data" / "prepared" / ".edgeqat-output").exists()  # DVC outs stay byte-identical


def test_an_output_through_a_symlink_into_the_source_is_refused(folder_ws):
    (folder_ws / "link").symlink_to(folder_ws / "raw", target_is_directory=True)
    before = tree(folder_ws)
    refused(_prepare_to(folder_ws, "link"), "link", "is the input prepare.path", ws=folder_ws, before=before)


# --- YAML: bounded, and no key given twice --------------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["fp32", "fp32", "fp32", "fp32", "fp32", "fp32", "fp32", "fp32", "fp32"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines)


def test_yaml_alias_bomb_in_params_is_refused_at_once(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["convert"]["variants"] = "BOMB"
    text = _alias_bomb() + "\n" + yaml.safe_dump(raw, sort_keys=False).replace("variants: BOMB", "variants: *a8")
    (tmp_path / "params.yaml").write_text(text)  # 9**9 = 387 million names once expanded
    before = tree(tmp_path)
    proc = subprocess.run([str(BIN / "edgeqat"), "check-params"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)  # on 08117f3: over 60 s and 1.8 GB, then killed
    refused(proc, "params.yaml", "YAML aliases", "over 100,000 values", ws=tmp_path, before=before)


def test_small_yaml_aliases_still_work(tmp_path):
    text = (REPO / "params.yaml").read_text()
    text = text.replace("train:\n", "train:\n  seed: &seed 7\n", 1).replace("qat:\n", "qat:\n  seed: *seed\n", 1)
    raw = yaml.safe_load(text)  # our insertion must not itself duplicate a key
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw).replace("seed: 7", "seed: &seed 7", 1))
    proc = edgeqat("check-params", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_a_duplicated_section_is_refused_naming_key_and_lines(tmp_path):
    params(tmp_path, qat={"epochs": 5})
    text = (tmp_path / "params.yaml").read_text()
    first = text.splitlines().index("qat:") + 1
    (tmp_path / "params.yaml").write_text(text + "qat:\n  learning_rate: 0.001\n")
    last = len(text.splitlines()) + 1
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "params.yaml", "duplicate key 'qat'", f"line {last}",
            f"first at line {first}", ws=tmp_path, before=before)


def test_a_duplicated_key_inside_a_section_is_refused(tmp_path):
    params(tmp_path)
    text = (tmp_path / "params.yaml").read_text().replace("train:\n", "train:\n  epochs: 3\n  epochs: 300\n", 1)
    text = text.replace("  epochs: 30\n", "", 1)
    (tmp_path / "params.yaml").write_text(text)
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "params.yaml", "duplicate key 'train.epochs'", ws=tmp_path,
            before=before)


def test_a_duplicated_key_in_a_device_profile_is_refused(tmp_path):
    from importlib import resources

    shipped = (resources.files("edgeqat.devices") / "profiles" / "rpi4.yaml").read_text()
    (tmp_path / "boards").mkdir()
    text = shipped.replace("name: rpi4", "name: my_board", 1) + "\nname: other_board\n"
    (tmp_path / "boards" / "my_board.yaml").write_text(text)
    params(tmp_path, validate={"devices": ["rpi4", "cortex_m7", "my_board"], "profiles_dir": "boards"})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "boards/my_board.yaml", "duplicate key 'name'", ws=tmp_path,
            before=before)


# --- labels: range checked before anything is allocated --------------------------------


def test_npz_label_of_three_billion_is_refused_before_allocating(tmp_path):
    y = np.arange(30, dtype=np.int64) % 3
    y[7] = 3_000_000_000
    npz(tmp_path / "raw" / "d.npz", gray_images(), y)
    proc, before = prepare_with(tmp_path, source="npz", path="raw/d.npz")
    refused(proc, "raw/d.npz", "label 3000000000 is out of range", "30 images", ws=tmp_path, before=before)


def test_npz_label_array_longer_than_the_images_is_refused_on_its_header(tmp_path):
    f = tmp_path / "raw" / "d.npz"
    f.parent.mkdir()
    np.savez_compressed(f, x=gray_images(), y=np.zeros(50_000_000, np.int64))  # 400 MB of labels, 0.4 MB zipped
    assert f.stat().st_size < 2_000_000
    proc, before = prepare_with(tmp_path, source="npz", path="raw/d.npz")
    refused(proc, "raw/d.npz", "x has 30 images but y has 50000000 labels", ws=tmp_path, before=before)
