"""prepare: split, resize, shard and checksum; plus its building blocks (split, transform, atomic_path)."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeqat.config import PrepareConfig
from edgeqat.data.shards import SPLITS, count_records, load_meta, load_split_arrays, shard_files
from edgeqat.data.split import stratified_split
from edgeqat.data.transform import normalize, to_model_pixels
from edgeqat.errors import DataError
from edgeqat.io import atomic_path
from edgeqat.steps.prepare import prepare

CLASSES = ["ant", "bee", "cat"]
PER_CLASS = 40
N = PER_CLASS * len(CLASSES)
# per class of 40 with val 0.15 / test 0.2: 8 test, 6 val, 26 train
EXPECTED = {"train": 26, "val": 6, "test": 8}


@pytest.fixture
def npz(tmp_path):
    """120 constant 10x10 images; image i has pixel value 2*i, so its origin can be traced."""
    rng = np.random.default_rng(0)
    y = rng.permutation(np.repeat(np.arange(len(CLASSES)), PER_CLASS))
    x = np.stack([np.full((10, 10), 2 * i, np.uint8) for i in range(N)])
    f = tmp_path / "raw" / "data.npz"
    f.parent.mkdir()
    np.savez_compressed(f, x=x, y=y, class_names=np.array(CLASSES))
    return f, x, y


def _cfg(path, **kw) -> PrepareConfig:
    base = dict(source="npz", path=str(path), image_size=8, shard_size=16, calibration_size=20, seed=42)
    base.update(kw)
    return PrepareConfig(**base)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _source_index(x: np.ndarray) -> np.ndarray:
    """Which source image each prepared (constant) image came from."""
    assert (x == x[:, :1, :1, :1]).all()
    return x[:, 0, 0, 0].astype(int) // 2


def test_prepare_npz_layout_counts_and_content(npz, tmp_path):
    f, x_src, y_src = npz
    out = tmp_path / "prepared"
    metrics = prepare(_cfg(f), out)

    assert sorted(p.name for p in out.iterdir()) == ["calib", "meta.json", "test", "train", "val"]
    meta = load_meta(out)
    assert meta["class_names"] == CLASSES
    assert meta["image_shape"] == [8, 8, 1]
    assert meta["normalization"] == {"scheme": "zero_one", "mean": 0.0, "std": 255.0}
    assert meta["sizes"] == {**{k: v * 3 for k, v in EXPECTED.items()}, "calib": 20}
    assert meta["source"] == str(f)
    for split, n in EXPECTED.items():
        assert meta["counts"][split] == {c: n for c in CLASSES}, split
    assert sum(meta["counts"]["calib"].values()) == 20

    seen: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x, y = load_split_arrays(out / split)
        assert x.dtype == np.uint8 and x.shape == (meta["sizes"][split], 8, 8, 1)
        assert y.dtype == np.int64
        assert count_records(out / split) == meta["sizes"][split]
        # stratified: every class in every split, in the recorded numbers
        assert np.bincount(y, minlength=3).tolist() == [meta["counts"][split][c] for c in CLASSES]
        src = _source_index(x)
        # each record is its source image with its source label
        np.testing.assert_array_equal(y, y_src[src])
        seen[split] = src
    # train/val/test partition the data; calib is the head of train
    parts = np.concatenate([seen["train"], seen["val"], seen["test"]])
    assert sorted(parts.tolist()) == list(range(N))
    np.testing.assert_array_equal(seen["calib"], seen["train"][:20])
    # splits are shuffled, not grouped by class
    _, y_train = load_split_arrays(out / "train")
    assert (np.diff(y_train) != 0).sum() > 10

    # the returned metrics (the runner writes them as metrics/prepare.json) agree with meta.json
    assert metrics["num_classes"] == 3
    assert (metrics["num_train"], metrics["num_val"], metrics["num_test"], metrics["num_calib"]) == (78, 18, 24, 20)
    assert metrics["image_shape"] == [8, 8, 1]
    assert metrics["counts"] == meta["counts"]
    assert metrics["data_sha256"] == meta["data_sha256"]
    # nothing temporary left beside the outputs
    assert sorted(os.listdir(tmp_path)) == ["prepared", "raw"]


def test_shards_hold_at_most_shard_size_records(npz, tmp_path):
    f, *_ = npz
    out = tmp_path / "prepared"
    prepare(_cfg(f, shard_size=16), out)
    meta = load_meta(out)
    for split in SPLITS:
        files = shard_files(out / split)
        n = meta["sizes"][split]
        assert len(files) == math.ceil(n / 16), split
        sizes = [len(np.load(yf)) for _, yf in files]
        assert sizes == [16] * (n // 16) + ([n % 16] if n % 16 else [])
        for i, (xf, yf) in enumerate(files):
            assert xf.name == f"shard-{i:05d}.x.npy" and yf.name == f"shard-{i:05d}.y.npy"
            assert len(np.load(xf)) == len(np.load(yf))


def test_checksum_covers_shard_contents_in_split_order(npz, tmp_path):
    f, *_ = npz
    out = tmp_path / "prepared"
    metrics = prepare(_cfg(f), out)
    h = hashlib.sha256()
    for split in ("train", "val", "test", "calib"):
        for xf, yf in shard_files(out / split):
            h.update(np.load(xf).tobytes())
            h.update(np.load(yf).tobytes())
    assert metrics["data_sha256"] == h.hexdigest()


def test_prepare_is_deterministic_and_seeded(npz, tmp_path):
    f, *_ = npz
    a = prepare(_cfg(f, seed=7), tmp_path / "a")
    b = prepare(_cfg(f, seed=7), tmp_path / "b")
    c = prepare(_cfg(f, seed=8), tmp_path / "c")
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(fa) == 1 + 2 * (5 + 2 + 2 + 2)  # meta + x/y pairs: 78, 18, 24, 20 records
    assert fa == fb  # byte-identical shards and meta.json
    assert a["data_sha256"] == b["data_sha256"]
    assert c["data_sha256"] != a["data_sha256"]
    for split in ("train", "val", "test"):  # same stratified proportions, different members
        assert c["counts"][split] == a["counts"][split]
    assert _files(tmp_path / "c")["train/shard-00000.y.npy"] != fa["train/shard-00000.y.npy"]


def test_prepare_rgb_and_normalisation_recorded(npz, tmp_path):
    f, *_ = npz
    out = tmp_path / "prepared"
    m = prepare(_cfg(f, channels=3, image_size=12, normalize="minus_one_one"), out)
    meta = load_meta(out)
    assert m["image_shape"] == meta["image_shape"] == [12, 12, 3]
    assert meta["normalization"] == {"scheme": "minus_one_one", "mean": 127.5, "std": 127.5}
    x, _ = load_split_arrays(out / "val")
    assert x.shape == (18, 12, 12, 3)
    assert (x[..., 0] == x[..., 2]).all()  # gray source repeated into RGB


def test_prepare_calibration_capped_by_train_size(npz, tmp_path):
    f, *_ = npz
    m = prepare(_cfg(f, calibration_size=1000), tmp_path / "p")
    assert m["num_calib"] == m["num_train"] == 78


def test_rerun_replaces_previous_output(npz, tmp_path):
    f, *_ = npz
    out = tmp_path / "prepared"
    prepare(_cfg(f, shard_size=4), out)
    assert len(shard_files(out / "train")) == 20
    (out / "stale.txt").write_text("from an earlier run")
    prepare(_cfg(f, shard_size=16), out)
    assert len(shard_files(out / "train")) == 5
    assert not (out / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["prepared", "raw"]


def test_prepare_too_few_images(tmp_path):
    f = tmp_path / "tiny.npz"
    np.savez(f, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 0, 1, 1]))
    out = tmp_path / "prepared"
    with pytest.raises(DataError, match="too few to fill the val split"):
        prepare(_cfg(f), out)
    assert not out.exists()
    assert os.listdir(tmp_path) == ["tiny.npz"]


def _folder_source(root: Path, per_class: int = 10) -> None:
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (9, 9), dtype=np.uint8)).save(root / c / f"{i:02d}.png")


def test_prepare_folder_source(tmp_path):
    raw = tmp_path / "raw"
    _folder_source(raw)
    m = prepare(PrepareConfig(source="folder", path=str(raw), image_size=8, shard_size=16), tmp_path / "p")
    assert m["num_classes"] == 2
    assert m["num_train"] + m["num_val"] + m["num_test"] == 20
    assert m["counts"]["test"] == {"a": 2, "b": 2}


def test_failed_prepare_leaves_no_output(tmp_path):
    raw = tmp_path / "raw"
    _folder_source(raw)
    bad = raw / "b" / "05.png"
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    out = tmp_path / "prepared"
    with pytest.raises(DataError) as info:
        prepare(PrepareConfig(source="folder", path=str(raw), image_size=8, shard_size=4), out)
    assert str(bad) in str(info.value)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["raw"]  # no temporary folder, no metrics


def test_failed_prepare_keeps_previous_output(tmp_path):
    raw = tmp_path / "raw"
    _folder_source(raw)
    out = tmp_path / "prepared"
    cfg = PrepareConfig(source="folder", path=str(raw), image_size=8, shard_size=4)
    prepare(cfg, out)
    before = _files(out)
    (raw / "a" / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="03.png"):
        prepare(cfg, out)
    assert _files(out) == before
    assert sorted(os.listdir(tmp_path)) == ["prepared", "raw"]


# =========================================================================== stratified_split


def test_stratified_split_partitions_per_class():
    counts = [50, 30, 20, 1, 2]
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(5), counts))
    s = stratified_split(labels, 0.1, 0.2, seed=3)
    assert set(s) == {"train", "val", "test"}
    allidx = np.concatenate(list(s.values()))
    assert len(allidx) == len(labels) == len(set(allidx.tolist()))  # disjoint
    assert sorted(allidx.tolist()) == list(range(len(labels)))  # covering
    for split in s.values():
        assert np.issubdtype(split.dtype, np.integer)
    per = {name: np.bincount(labels[ix], minlength=5).tolist() for name, ix in s.items()}
    assert per["test"] == [10, 6, 4, 0, 0]
    assert per["val"] == [5, 3, 2, 0, 0]
    assert per["train"] == [35, 21, 14, 1, 2]  # every class keeps a training image
    # shuffled: classes are mixed, not in blocks
    assert (np.diff(labels[s["train"]]) != 0).sum() > 20


def test_stratified_split_deterministic_by_seed():
    labels = np.repeat(np.arange(3), 30)
    a = stratified_split(labels, 0.2, 0.2, seed=1)
    b = stratified_split(labels, 0.2, 0.2, seed=1)
    c = stratified_split(labels, 0.2, 0.2, seed=2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_stratified_split_zero_fractions_is_a_shuffle():
    labels = np.repeat(np.arange(2), 10)
    s = stratified_split(labels, 0.0, 0.0, seed=0)
    assert len(s["val"]) == len(s["test"]) == 0
    assert sorted(s["train"].tolist()) == list(range(20))
    assert s["train"].tolist() != list(range(20))


# =========================================================================== to_model_pixels


def test_to_model_pixels_identity_when_shape_matches():
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 1), dtype=np.uint8)
    out = to_model_pixels(img, 8, 1)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    "shape, size, channels",
    [
        ((10, 12, 1), 8, 1),
        ((4, 4, 1), 16, 1),
        ((20, 16, 3), 8, 3),
        ((20, 16, 3), 8, 1),
        ((9, 9, 1), 12, 3),
        ((8, 8, 3), 8, 1),
        ((8, 8, 1), 8, 3),
    ],
)
def test_to_model_pixels_shapes(shape, size, channels):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    out = to_model_pixels(img, size, channels)
    assert out.shape == (size, size, channels)
    assert out.dtype == np.uint8


def test_to_model_pixels_resize_keeps_constant_image():
    img = np.full((20, 30, 3), (10, 120, 250), np.uint8)
    out = to_model_pixels(img, 8, 3)
    assert (out == np.array([10, 120, 250], np.uint8)).all()
    gray = to_model_pixels(np.full((5, 7, 1), 99, np.uint8), 16, 1)
    assert gray.shape == (16, 16, 1) and (gray == 99).all()


def test_to_model_pixels_gray_to_rgb_repeats():
    img = np.random.default_rng(2).integers(0, 256, (8, 8, 1), dtype=np.uint8)
    out = to_model_pixels(img, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], img[..., 0])


def test_to_model_pixels_rgb_to_gray_is_luma():
    prim = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    prim = np.tile(prim, (8, 2, 1))  # 8 x 8: red, green, blue, white, repeated
    out = to_model_pixels(prim, 8, 1)
    assert out.shape == (8, 8, 1)
    assert out[0, :4, 0].tolist() == [76, 150, 29, 255]
    # agrees with PIL's own "L" conversion to within rounding
    rgb = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(rgb).convert("L"), dtype=int)
    assert np.abs(to_model_pixels(rgb, 8, 1)[..., 0].astype(int) - pil).max() <= 1


def test_normalize_schemes():
    x = np.array([0, 127.5, 255], np.float32)
    np.testing.assert_allclose(normalize(x.astype(np.uint8), "zero_one"), [0, 127 / 255, 1.0], rtol=1e-6)
    np.testing.assert_allclose(normalize(np.array([0, 255], np.uint8), "minus_one_one"), [-1.0, 1.0])
    assert normalize(np.array([3], np.uint8), "zero_one").dtype == np.float32


# =========================================================================== atomic_path


class Boom(Exception):
    pass


def test_atomic_file_written_on_success(tmp_path):
    dest = tmp_path / "out" / "model.bin"
    with atomic_path(dest) as tmp:
        assert tmp.parent.parent == dest.parent  # a sibling, same filesystem
        assert not dest.exists()
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"
    assert os.listdir(dest.parent) == ["model.bin"]


def test_atomic_file_untouched_on_error(tmp_path):
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"old")
    with pytest.raises(Boom):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half-written")
            raise Boom()
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_atomic_file_not_created_on_error(tmp_path):
    dest = tmp_path / "model.bin"
    with pytest.raises(Boom):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"x")
            raise Boom()
    assert os.listdir(tmp_path) == []


def test_atomic_dir_untouched_on_error(tmp_path):
    dest = tmp_path / "prepared"
    dest.mkdir()
    (dest / "meta.json").write_text("old")
    with pytest.raises(Boom):
        with atomic_path(dest, is_dir=True) as tmp:
            (tmp / "meta.json").write_text("new")
            (tmp / "train").mkdir()
            raise Boom()
    assert _files(dest) == {"meta.json": b"old"}
    assert os.listdir(tmp_path) == ["prepared"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    dest = tmp_path / "prepared"
    dest.mkdir()
    (dest / "stale").write_text("old")
    with atomic_path(dest, is_dir=True) as tmp:
        (tmp / "meta.json").write_text("new")
    assert _files(dest) == {"meta.json": b"new"}
    assert os.listdir(tmp_path) == ["prepared"]


def test_atomic_writer_that_writes_nothing(tmp_path):
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="produced nothing"):
        with atomic_path(dest):
            pass
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_atomic_suffix_kept(tmp_path):
    dest = tmp_path / "m.keras"
    with atomic_path(dest, suffix=".keras") as tmp:
        assert tmp.name.endswith(".keras")
        tmp.write_text("k")
    assert dest.read_text() == "k"
