"""Raw data readers (idx, folder, npz, digits) on small synthetic data written by the tests."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeqat.data.idx import write_idx
from edgeqat.data.sources import open_source
from edgeqat.errors import ConfigError, DataError

N, H, W, K = 40, 12, 12, 4


@pytest.fixture(autouse=True)
def private_tmp(tmp_path_factory, monkeypatch):
    """Point tempfile at a folder of our own: leftover temporary copies can be seen, and
    none end up in the system temp folder."""
    d = tmp_path_factory.mktemp("systmp")
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _images(n=N, h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def _labels(n=N, k=K):
    return (np.arange(n) % k).astype(np.uint8)


def _read_all(src):
    return np.stack([src.read(i) for i in range(len(src))])


# =========================================================================== IDX


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_roundtrip(tmp_path, private_tmp, gz):
    x, y = _images(), _labels()
    img, lab = write_idx(x, y, tmp_path / "train", gz=gz)
    assert img.name == "train-images-idx3-ubyte" + (".gz" if gz else "")
    assert lab.name == "train-labels-idx1-ubyte" + (".gz" if gz else "")
    with open_source("idx", tmp_path) as src:
        assert len(src) == N
        assert src.labels.dtype == np.int64
        np.testing.assert_array_equal(src.labels, y.astype(np.int64))
        assert src.class_names == ["0", "1", "2", "3"]
        for i in (0, 1, 17, N - 1):
            r = src.read(i)
            assert r.shape == (H, W, 1)
            assert r.dtype == np.uint8
            np.testing.assert_array_equal(r[..., 0], x[i])
        np.testing.assert_array_equal(_read_all(src)[..., 0], x)
        # gzip is inflated into a private temporary copy
        assert len(os.listdir(private_tmp)) == (1 if gz else 0)
    # ... which close() removes
    assert os.listdir(private_tmp) == []


def test_idx_path_may_name_the_images_file(tmp_path):
    x, y = _images(), _labels()
    img, _ = write_idx(x, y, tmp_path / "t10k", gz=True)
    with open_source("idx", img) as src:
        assert len(src) == N
        np.testing.assert_array_equal(src.read(5)[..., 0], x[5])


def test_idx_two_pairs_are_concatenated_in_name_order(tmp_path):
    xa, ya = _images(30, seed=1), _labels(30)
    xb, yb = _images(25, seed=2), (3 - _labels(25)).astype(np.uint8)
    write_idx(xa, ya, tmp_path / "train", gz=False)
    write_idx(xb, yb, tmp_path / "t10k", gz=True)
    # files are taken in name order, gzipped and plain mixed: t10k-images... < train-images...
    with open_source("idx", tmp_path) as src:
        assert len(src) == 55
        np.testing.assert_array_equal(src.labels, np.concatenate([yb, ya]).astype(np.int64))
        expected = np.concatenate([xb, xa])
        for i in (0, 24, 25, 26, 54):
            np.testing.assert_array_equal(src.read(i)[..., 0], expected[i])
        np.testing.assert_array_equal(_read_all(src)[..., 0], expected)


def test_idx_pairs_of_different_image_sizes_rejected(tmp_path):
    write_idx(_images(8, 12, 12), _labels(8), tmp_path / "a")
    write_idx(_images(8, 10, 10), _labels(8), tmp_path / "b")
    with pytest.raises(DataError) as info:
        open_source("idx", tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "b-images-idx3-ubyte") in msg
    assert "10x10" in msg and "12x12" in msg


def test_idx_truncated_plain_image_file(tmp_path, private_tmp):
    img, _ = write_idx(_images(), _labels(), tmp_path / "train")
    data = img.read_bytes()
    img.write_bytes(data[: len(data) - 100])
    with pytest.raises(DataError) as info:
        open_source("idx", tmp_path)
    msg = str(info.value)
    assert msg.startswith(str(img))
    assert "truncated" in msg
    assert str(16 + N * H * W) in msg  # the size the header promises
    assert os.listdir(private_tmp) == []


def test_idx_truncated_gzip_image_file(tmp_path, private_tmp):
    img, _ = write_idx(_images(), _labels(), tmp_path / "train", gz=True)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        open_source("idx", tmp_path)
    assert str(info.value).startswith(str(img))
    # the half-inflated copy does not outlive the error
    assert os.listdir(private_tmp) == []


def test_idx_truncated_gzip_whose_stream_is_complete_but_short(tmp_path):
    # A gzip that decompresses fine but holds fewer bytes than the header promises.
    img = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(_images(), _labels(), tmp_path / "train", gz=True)
    raw = gzip.decompress(img.read_bytes())
    img.write_bytes(gzip.compress(raw[:-H * W]))
    with pytest.raises(DataError, match="truncated") as info:
        open_source("idx", tmp_path)
    assert str(img) in str(info.value)


def test_idx_count_mismatch_names_both_files(tmp_path):
    x, y = _images(), _labels()
    img, _ = write_idx(x, y, tmp_path / "train")
    _, lab = write_idx(x[:1], y[:39], tmp_path / "other")  # labels with 39 entries
    os.replace(lab, tmp_path / "train-labels-idx1-ubyte")
    (tmp_path / "other-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as info:
        open_source("idx", tmp_path)
    msg = str(info.value)
    assert str(img) in msg
    assert str(tmp_path / "train-labels-idx1-ubyte") in msg
    assert "40 images" in msg and "39 labels" in msg


def test_idx_missing_labels_file(tmp_path):
    img, lab = write_idx(_images(), _labels(), tmp_path / "train", gz=True)
    lab.unlink()
    with pytest.raises(DataError) as info:
        open_source("idx", tmp_path)
    msg = str(info.value)
    assert str(img) in msg
    assert lab.name in msg  # the file it looked for


def test_idx_bad_magic(tmp_path):
    img, _ = write_idx(_images(), _labels(), tmp_path / "train")
    data = bytearray(img.read_bytes())
    data[0] = 0x1F
    img.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not an IDX file") as info:
        open_source("idx", tmp_path)
    assert str(img) in str(info.value)


def test_idx_non_ubyte_element_type(tmp_path):
    img, _ = write_idx(_images(), _labels(), tmp_path / "train")
    data = bytearray(img.read_bytes())
    data[2] = 0x0D  # float
    img.write_bytes(bytes(data))
    with pytest.raises(DataError, match="0x0d") as info:
        open_source("idx", tmp_path)
    assert str(img) in str(info.value)


def test_idx_folder_without_idx_files(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no IDX image files") as info:
        open_source("idx", tmp_path)
    assert str(tmp_path) in str(info.value)


def test_idx_missing_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="not found") as info:
        open_source("idx", missing)
    assert str(missing) in str(info.value)


# =========================================================================== folder


def _png(path: Path, arr: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


@pytest.fixture
def image_folder(tmp_path):
    """Three classes (created out of order): gray PNGs, RGB PNGs, RGB JPEG + gray PNG."""
    rng = np.random.default_rng(3)
    root = tmp_path / "images"
    pix = {}
    for i in range(3):
        a = rng.integers(0, 256, (9, 7), dtype=np.uint8)
        _png(root / "zebra" / f"z{i}.png", a)
        pix[("zebra", i)] = a[..., None]
    for i in range(2):
        a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        _png(root / "ant" / f"a{i}.png", a)
        pix[("ant", i)] = a
    flat = np.full((10, 10, 3), (200, 40, 90), dtype=np.uint8)
    _png(root / "moth" / "m0.jpg", flat, "JPEG")
    gray = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    _png(root / "moth" / "sub" / "m1.png", gray)  # nested folders are searched
    (root / "moth" / "notes.txt").write_text("ignored")
    (root / "moth" / ".hidden.png").write_bytes(b"not an image, but hidden")
    (root / ".cache").mkdir()  # hidden folder is not a class
    (root / "stray.png").write_bytes(b"top-level files are not a class")
    return root, pix, flat, gray


def test_folder_classes_labels_and_pixels(image_folder):
    root, pix, flat, gray = image_folder
    with open_source("folder", root) as src:
        assert src.class_names == ["ant", "moth", "zebra"]
        assert len(src) == 7
        np.testing.assert_array_equal(src.labels, [0, 0, 1, 1, 2, 2, 2])
        assert src.labels.dtype == np.int64
        names = [p.name for p in src.files]
        assert names == ["a0.png", "a1.png", "m0.jpg", "m1.png", "z0.png", "z1.png", "z2.png"]
        # RGB PNGs: exact
        for i in range(2):
            r = src.read(i)
            assert r.shape == (6, 5, 3) and r.dtype == np.uint8
            np.testing.assert_array_equal(r, pix[("ant", i)])
        # JPEG: lossy, but shape and colour survive
        j = src.read(2)
        assert j.shape == (10, 10, 3) and j.dtype == np.uint8
        assert np.abs(j.astype(int) - flat.astype(int)).max() <= 8
        # gray PNG in a subfolder
        g = src.read(3)
        assert g.shape == (4, 4, 1)
        np.testing.assert_array_equal(g[..., 0], gray)
        # gray PNGs: exact, with a channel axis
        for i in range(3):
            r = src.read(4 + i)
            assert r.shape == (9, 7, 1)
            np.testing.assert_array_equal(r, pix[("zebra", i)])


def test_folder_converts_other_modes(tmp_path):
    root = tmp_path / "img"
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    _png(root / "a" / "rgba.png", rgba)
    la = Image.fromarray(np.full((3, 3), 77, np.uint8)).convert("LA")
    la.save(root / "a" / "la.png")
    pal = Image.fromarray(np.full((3, 3, 3), (0, 255, 0), np.uint8)).convert("P")
    (root / "b").mkdir()
    pal.save(root / "b" / "pal.png")
    with open_source("folder", root) as src:
        reads = {p.name: src.read(i) for i, p in enumerate(src.files)}
    assert reads["rgba.png"].shape == (3, 3, 3)
    np.testing.assert_array_equal(reads["rgba.png"][0, 0], [255, 0, 0])
    assert reads["la.png"].shape == (3, 3, 1)
    assert (reads["la.png"] == 77).all()
    assert reads["pal.png"].shape == (3, 3, 3)
    np.testing.assert_array_equal(reads["pal.png"][1, 1], [0, 255, 0])


def test_folder_corrupt_image_named_on_read(image_folder):
    root, *_ = image_folder
    bad = root / "zebra" / "z9.png"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    with open_source("folder", root) as src:  # listing does not decode
        i = [p.name for p in src.files].index("z9.png")
        src.read(0)  # the good ones still read
        with pytest.raises(DataError) as info:
            src.read(i)
    assert str(bad) in str(info.value)
    assert "cannot decode" in str(info.value)


def test_folder_truncated_png_named_on_read(tmp_path):
    root = tmp_path / "img"
    _png(root / "a" / "ok.png", np.zeros((20, 20), np.uint8))
    good = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    _png(root / "b" / "cut.png", good)
    cut = root / "b" / "cut.png"
    cut.write_bytes(cut.read_bytes()[:200])
    with open_source("folder", root) as src:
        with pytest.raises(DataError) as info:
            src.read(1)
    assert str(cut) in str(info.value)


def test_folder_empty_class_named(image_folder):
    root, *_ = image_folder
    empty = root / "bee"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as info:
        open_source("folder", root)
    assert str(info.value).startswith(str(empty))
    assert "empty" in str(info.value)


def test_folder_single_class(tmp_path):
    root = tmp_path / "img"
    for i in range(3):
        _png(root / "only" / f"{i}.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="one class") as info:
        open_source("folder", root)
    assert "'only'" in str(info.value)


def test_folder_without_class_subfolders(tmp_path):
    root = tmp_path / "img"
    _png(root / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="no class subfolders") as info:
        open_source("folder", root)
    assert str(root) in str(info.value)


def test_folder_missing(tmp_path):
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(DataError, match="not found") as info:
        open_source("folder", missing)
    assert str(missing) in str(info.value)


# =========================================================================== npz


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["savez", "compressed"])
def test_npz_uint8_gray(tmp_path, private_tmp, save):
    x, y = _images(), _labels()
    f = tmp_path / "d.npz"
    save(f, x=x, y=y)
    with open_source("npz", f) as src:
        assert len(src) == N
        assert src.class_names == ["0", "1", "2", "3"]
        np.testing.assert_array_equal(src.labels, y)
        assert src.labels.dtype == np.int64
        r = src.read(7)
        assert r.shape == (H, W, 1) and r.dtype == np.uint8
        np.testing.assert_array_equal(_read_all(src)[..., 0], x)
    assert os.listdir(private_tmp) == []


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["savez", "compressed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_npz_float_unit_range_is_scaled_to_255(tmp_path, save, dtype):
    k = np.random.default_rng(5).integers(0, 256, size=(N, 6, 5, 3))
    k[0, 0, 0] = [0, 255, 128]  # the extremes are present
    x = (k / 255.0).astype(dtype)
    f = tmp_path / "d.npz"
    save(f, x=x, y=_labels())
    with open_source("npz", f) as src:
        got = _read_all(src)
    assert got.shape == (N, 6, 5, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, k.astype(np.uint8))


def test_npz_float_0_255_range_is_not_rescaled(tmp_path):
    k = np.random.default_rng(6).integers(0, 256, size=(N, 4, 4))
    k[0, 0, 0] = 255
    np.savez(tmp_path / "d.npz", x=k.astype(np.float32), y=_labels())
    with open_source("npz", tmp_path / "d.npz") as src:
        np.testing.assert_array_equal(_read_all(src)[..., 0], k.astype(np.uint8))


def test_npz_pixel_values_out_of_range(tmp_path):
    x = np.zeros((N, 4, 4), np.float32)
    x[3, 1, 1] = 300.0
    np.savez(tmp_path / "d.npz", x=x, y=_labels())
    with pytest.raises(DataError, match=r"\[0\.0, 300\.0\]"):
        open_source("npz", tmp_path / "d.npz")


def test_npz_class_names_and_folder_path(tmp_path):
    d = tmp_path / "raw"
    d.mkdir()
    np.savez_compressed(d / "data.npz", x=_images(), y=_labels(), class_names=np.array(["a", "b", "c", "d"]))
    with open_source("npz", d) as src:  # a folder holding exactly one .npz
        assert src.class_names == ["a", "b", "c", "d"]
        assert src.origin == str(d / "data.npz")


def test_npz_folder_with_two_archives(tmp_path):
    np.savez(tmp_path / "a.npz", x=_images(), y=_labels())
    np.savez(tmp_path / "b.npz", x=_images(), y=_labels())
    with pytest.raises(DataError, match="exactly one .npz.*found 2"):
        open_source("npz", tmp_path)


def test_npz_length_mismatch_names_both_counts(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x=_images(10), y=_labels(9))
    with pytest.raises(DataError) as info:
        open_source("npz", f)
    msg = str(info.value)
    assert str(f) in msg
    assert "10 images" in msg and "9 labels" in msg


@pytest.mark.parametrize(
    "labels, names, expected",
    [
        ([0, 1, -1, 2], None, "label -1"),
        ([0, 1, 2, 3], ["a", "b", "c"], "label 3"),
        ([0, 1, 7, 2], ["a", "b", "c"], "label 7"),
    ],
)
def test_npz_labels_out_of_range(tmp_path, labels, names, expected):
    f = tmp_path / "d.npz"
    arrays = {"x": _images(4), "y": np.array(labels)}
    if names is not None:
        arrays["class_names"] = np.array(names)
    np.savez(f, **arrays)
    with pytest.raises(DataError) as info:
        open_source("npz", f)
    msg = str(info.value)
    assert expected in msg and "out of range" in msg
    assert str(f) in msg


def test_npz_class_without_images(tmp_path):
    np.savez(tmp_path / "d.npz", x=_images(4), y=np.array([0, 0, 2, 2]))
    with pytest.raises(DataError, match="'1' have no images"):
        open_source("npz", tmp_path / "d.npz")


def test_npz_float_labels_that_are_whole_numbers(tmp_path):
    np.savez(tmp_path / "d.npz", x=_images(4), y=np.array([0.0, 1.0, 1.0, 0.0]))
    with open_source("npz", tmp_path / "d.npz") as src:
        np.testing.assert_array_equal(src.labels, [0, 1, 1, 0])
        assert src.labels.dtype == np.int64
    np.savez(tmp_path / "e.npz", x=_images(4), y=np.array([0.0, 1.5, 1.0, 0.0]))
    with pytest.raises(DataError, match="integers"):
        open_source("npz", tmp_path / "e.npz")


def test_npz_missing_y_named(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x=_images(), labels=_labels())
    with pytest.raises(DataError) as info:
        open_source("npz", f)
    msg = str(info.value)
    assert str(f) in msg
    assert "missing array(s) ['y']" in msg
    assert "labels" in msg  # what is there instead


def test_npz_bad_x_shape(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x=np.zeros((4, 3, 3, 2), np.uint8), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"\(4, 3, 3, 2\)"):
        open_source("npz", f)


def test_npz_not_a_zip(tmp_path):
    f = tmp_path / "d.npz"
    f.write_bytes(b"definitely not a zip archive")
    with pytest.raises(DataError, match="not a readable .npz") as info:
        open_source("npz", f)
    assert str(f) in str(info.value)


def test_npz_missing_file(tmp_path):
    f = tmp_path / "nope.npz"
    with pytest.raises(DataError, match="not found") as info:
        open_source("npz", f)
    assert str(f) in str(info.value)


# =========================================================================== digits & dispatch


def test_digits():
    with open_source("digits", None) as src:
        assert len(src) == 1797
        assert src.class_names == [str(k) for k in range(10)]
        assert np.bincount(src.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
        x = _read_all(src)
    assert x.shape == (1797, 8, 8, 1)
    assert x.dtype == np.uint8
    assert x.min() == 0 and x.max() == 255
    # 16 (the digits maximum) maps to 255, other levels in between
    assert len(np.unique(x)) == 17


def test_open_source_needs_path_and_known_name(tmp_path):
    with pytest.raises(DataError, match="needs a path"):
        open_source("npz", None)
    with pytest.raises(DataError, match="unknown data source 'csv'"):
        open_source("csv", tmp_path)


# =========================================================================== a source added by its entry


@pytest.fixture
def toy_source(monkeypatch):
    """tests/toy_source.py's entry registered for one test (and gone after it)."""
    import toy_source

    from edgeqat.catalog.datasources import SOURCES

    monkeypatch.setitem(SOURCES, toy_source.ENTRY.name, toy_source.ENTRY)
    return toy_source


def test_a_registered_source_runs_through_params_prepare_and_data_add(toy_source, tmp_path):
    from edgeqat.config import parse_params
    from edgeqat.data.describe import source_kind
    from edgeqat.data.shards import load_meta
    from edgeqat.steps.prepare import prepare

    raw = toy_source.write(tmp_path / "site.pixels")
    p = parse_params({"prepare": {"source": "pixel_lines", "path": str(raw), "image_size": 8, "calibration_size": 4},
                      "qat": {"finetune_source": "pixel_lines", "finetune_path": str(raw)}})
    metrics = prepare(p.prepare, tmp_path / "prepared")
    assert metrics["num_classes"] == 3
    assert metrics["num_train"] + metrics["num_val"] + metrics["num_test"] == 60
    assert load_meta(tmp_path / "prepared")["image_shape"] == [8, 8, 1]
    assert source_kind(raw) == "pixel_lines"  # `edgeqat data add` recognises its layout


def test_a_registered_source_that_reads_a_path_needs_one(toy_source):
    from edgeqat.config import parse_params

    with pytest.raises(ConfigError, match="finetune_path"):
        parse_params({"qat": {"finetune_source": "pixel_lines"}})


def test_an_unknown_source_is_named_with_the_known_ones():
    from edgeqat.config import parse_params

    with pytest.raises(ConfigError) as info:
        parse_params({"prepare": {"source": "pixel_lines"}})
    assert "prepare.source: unknown data source 'pixel_lines' (known: digits, idx, folder, npz)" in str(info.value)
    with pytest.raises(DataError, match="unknown data source 'pixel_lines' \\(known: digits, idx, folder, npz\\)"):
        open_source("pixel_lines", "x")
