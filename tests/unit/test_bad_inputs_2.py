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
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO
from test_bad_inputs import BIN, edgeqat, gray_images, image_folder, npz, params, prepare_with, refused, tree
from yaml_bomb import params_with_alias_bomb

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


def test_yaml_alias_bomb_in_params_is_refused_at_once(tmp_path):
    (tmp_path / "params.yaml").write_text(params_with_alias_bomb())  # 9**9 = 387 million names once expanded
    before = tree(tmp_path)
    proc = subprocess.run([str(BIN / "edgeqat"), "check-params"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)  # on 08117f3: over 60 s and 1.8 GB, then killed
    refused(proc, "params.yaml", "YAML aliases", "over 100,000 values", ws=tmp_path, before=before)


def test_data_add_refuses_an_alias_bomb_before_dvc_add(tmp_path):
    """`edgeqat data add` rewrites params.yaml and runs `dvc add` (which parses params.yaml for
    dvc.yaml's ${...}): the rewritten text is read by the checked loader first."""
    image_folder(tmp_path / "imgs")
    (tmp_path / "params.yaml").write_text(params_with_alias_bomb())
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "params.yaml"], ["git", "commit", "-qm", "p"],
                [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    before = tree(tmp_path)
    proc = subprocess.run([str(BIN / "edgeqat"), "data", "add", "imgs", "--no-commit"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)  # on 1e2652d: 1.4 GB after 20 s, killed
    refused(proc, "params.yaml", "YAML aliases", "alias bomb", ws=tmp_path, before=before)
    assert not (tmp_path / "imgs.dvc").exists()


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


# Runs a command and reports its peak memory (the children's ru_maxrss, in KiB) on stderr's last line.
PEAK_RSS = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)")


def test_npz_label_array_longer_than_the_images_is_refused_on_its_header(tmp_path):
    f = tmp_path / "raw" / "d.npz"
    f.parent.mkdir()
    np.savez_compressed(f, x=gray_images(), y=np.zeros(50_000_000, np.int64))  # 400 MB of labels, 0.4 MB zipped
    assert f.stat().st_size < 2_000_000
    params(tmp_path, prepare={"source": "npz", "path": "raw/d.npz"})
    before = tree(tmp_path)
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(BIN / "edgeqat"), "stage", "prepare", "--prepared", "prep",
                           "--prepare-metrics", "m/prepare.json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    *lines, peak_kib = proc.stderr.rstrip().splitlines()
    proc.stderr = "\n".join(lines) + "\n"
    refused(proc, "raw/d.npz", "x has 30 images but y has 50000000 labels", ws=tmp_path, before=before)
    assert int(peak_kib) < 200_000, f"{int(peak_kib) / 1024:.0f} MiB: the labels were read"  # 08117f3: 434 MiB


# --- images decoded as they are meant to be --------------------------------------------


def _prepared_pixels(prep: Path) -> dict[str, np.ndarray]:
    """Every prepared image (uint8) by class name, whatever split it landed in."""
    from edgeqat.data.shards import load_meta, load_split_arrays

    names = load_meta(prep)["class_names"]
    xs, ys = zip(*(load_split_arrays(prep / s) for s in ("train", "val", "test")))
    x, y = np.concatenate(xs), np.concatenate(ys)
    return {c: x[y == k] for k, c in enumerate(names)}


def _classes(root: Path, make) -> Path:
    """Class folders a, b, c of 10 images each: ``make(class, i, folder)`` writes one."""
    for c in "abc":
        (root / c).mkdir(parents=True)
        for i in range(10):
            make(c, i, root / c)
    return root


def _prepare_ok(ws: Path, **prepare) -> subprocess.CompletedProcess:
    proc, _ = prepare_with(ws, source="folder", path="raw", image_size=8, calibration_size=4, **prepare)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_16_bit_pngs_are_scaled_not_clipped_to_white(tmp_path):
    level = {"a": 20000, "b": 40000, "c": 60000}  # all above 255: on 08117f3 every image became 255
    _classes(tmp_path / "raw", lambda c, i, d: Image.fromarray(np.full((8, 8), level[c], np.uint16)).save(d / f"{i}.png"))
    assert Image.open(tmp_path / "raw" / "a" / "0.png").mode.startswith("I;16")
    _prepare_ok(tmp_path)
    px = _prepared_pixels(tmp_path / "prep")
    for c, v in level.items():
        assert np.all(px[c] == round(v * 255 / 65535)), (c, np.unique(px[c]))


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((8, 8), np.uint8)
    stored[:, :4] = 255  # the camera's left half is bright; EXIF 6 says: turn 90 degrees clockwise to view

    def make(c, i, d):
        im = Image.fromarray(stored if c == "a" else np.full((8, 8), 60 * "abc".index(c), np.uint8))
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(d / f"{i}.jpg", exif=exif, quality=100)

    _classes(tmp_path / "raw", make)
    _prepare_ok(tmp_path)
    upright = _prepared_pixels(tmp_path / "prep")["a"].astype(float)[..., 0]
    assert upright[:, :4, :].mean() > 200 and upright[:, 4:, :].mean() < 50, upright[0]  # top bright, bottom dark
    assert abs(upright[:, :, :4].mean() - upright[:, :, 4:].mean()) < 30  # not left/right as stored


def test_gif_and_webp_are_read_and_other_files_named_as_skipped(tmp_path):
    kinds = {"a": "png", "b": "gif", "c": "webp"}
    _classes(tmp_path / "raw", lambda c, i, d: Image.fromarray(np.full((8, 8, 3), 25 * i, np.uint8)).save(
        d / f"{i}.{kinds[c]}", **({"lossless": True} if kinds[c] == "webp" else {})))
    (tmp_path / "raw" / "a" / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "raw" / "b" / "scan.tiff")
    proc = _prepare_ok(tmp_path)
    meta = yaml.safe_load((tmp_path / "prep" / "meta.json").read_text())
    assert sum(meta["counts"][s]["b"] for s in ("train", "val", "test")) == 10  # on 08117f3: "class folder is empty"
    assert sum(meta["counts"][s]["c"] for s in ("train", "val", "test")) == 10
    warning = next(ln for ln in proc.stderr.splitlines() if "skipped 2 file(s)" in ln)
    assert "raw/a/notes.txt" in warning and "raw/b/scan.tiff" in warning and ".gif" in warning
    px = _prepared_pixels(tmp_path / "prep")
    assert sorted(np.unique(px["b"])) == sorted(np.unique(px["a"]))  # the GIF's palette kept the grey levels


@pytest.mark.parametrize("background, expected", [("white", 255), ("black", 0)])
def test_transparent_pixels_are_composited_on_the_stated_background(tmp_path, background, expected):
    def make(c, i, d):
        rgba = np.zeros((8, 8, 4), np.uint8)  # black, fully transparent...
        rgba[2:6, 2:6] = [120, 120, 120, 255]  # ...around an opaque grey square
        if c != "a":
            rgba[..., :3] = 60 * "abc".index(c)
            rgba[..., 3] = 255
        Image.fromarray(rgba, "RGBA").save(d / f"{i}.png")

    _classes(tmp_path / "raw", make)
    params_extra = {"alpha_background": background}
    proc = _prepare_ok(tmp_path, **params_extra)
    a = _prepared_pixels(tmp_path / "prep")["a"][..., 0]
    assert np.all(a[:, 0, 0] == expected) and np.all(a[:, 3:5, 3:5] == 120), np.unique(a)
    assert f"composited onto {background} (prepare.alpha_background)" in proc.stderr


# --- item 9: smaller defects, each a clear message or warning ---------------------------


def _distinct_images(root: Path, per_class: int = 10, classes: str = "abc", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_test_folder_copied_from_train_warns_of_leakage(tmp_path):
    _distinct_images(tmp_path / "raw" / "train")
    shutil.copytree(tmp_path / "raw" / "train", tmp_path / "raw" / "test")
    proc = _prepare_ok(tmp_path)
    warning = next((ln for ln in proc.stderr.splitlines() if "exact copies of training" in ln), None)
    assert warning is not None, proc.stderr
    assert "30 of 30 distinct test image(s)" in warning and "raw/test/" in warning and "raw/train/" in warning
    metrics = yaml.safe_load((tmp_path / "m" / "prepare.json").read_text())
    assert metrics["copies_of_train"] == {"val": 0, "test": 30}


def test_distinct_images_give_no_leakage_warning(tmp_path):
    _distinct_images(tmp_path / "raw" / "train")
    _distinct_images(tmp_path / "raw" / "test", per_class=3, seed=1)
    proc = _prepare_ok(tmp_path)
    assert "exact copies" not in proc.stderr


def test_a_one_image_class_warns_that_it_is_never_scored(tmp_path):
    _distinct_images(tmp_path / "raw")
    _distinct_images(tmp_path / "raw", per_class=1, classes="z", seed=3)
    proc = _prepare_ok(tmp_path)
    assert "class 'z' has 1 image(s), none in the val or test split: its accuracy is never measured" in proc.stderr


@pytest.mark.parametrize("name", ["team/classifier", "clf:v2", "../clf"])
def test_a_model_name_mlflow_refuses_is_refused_by_check_params(tmp_path, name):
    params(tmp_path, register={"model_name": name})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "register.model_name", repr(name), "'/' or ':'", ws=tmp_path,
            before=before)


def test_a_variant_listed_twice_is_refused(tmp_path):
    params(tmp_path, convert={"variants": ["fp32", "qat_int8", "ptq_int8", "qat_int8"]})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "convert.variants", "'qat_int8' more than once", ws=tmp_path,
            before=before)


@pytest.mark.parametrize("key", ["train.epochs", "qat.epochs", "prune.channel_epochs", "cluster.qat_epochs"])
def test_epochs_have_an_upper_bound(tmp_path, key):
    section, field = key.split(".")
    params(tmp_path, **{section: {field: 30000}})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), key, "less than or equal to 1000", "30000", ws=tmp_path,
            before=before)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs in the workspace: a real full disk (needs root to mount; skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_full_disk_is_one_clear_line_and_leaves_nothing(tmp_path, tiny_disk):
    npz(tmp_path / "raw" / "d.npz", gray_images(60, size=64))  # 60 x 64 x 64 bytes: 240 KiB of shards
    params(tmp_path, prepare={"source": "npz", "path": "raw/d.npz", "image_size": 64, "calibration_size": 4})
    before = tree(tmp_path)
    proc = edgeqat("stage", "prepare", "--prepared", "small/prep", "--prepare-metrics", "m/prepare.json", cwd=tmp_path)
    refused(proc, "small/prep", "no space left on the device", ws=tmp_path, before=before)
    assert os.listdir(tiny_disk) == [], "a half-written output was kept"
