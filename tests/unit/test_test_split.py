"""A source's own test files (IDX t10k-*, a folder's test/) are the test split."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_images
from edgeqat.config import PrepareConfig
from edgeqat.data.idx import write_idx
from edgeqat.data.shards import load_meta, load_split_arrays
from edgeqat.errors import DataError
from edgeqat.steps.prepare import prepare


@pytest.fixture()
def mnist_like(tmp_path):
    """train-* (120 images) and t10k-* (40 images) IDX files; t10k images are marked by
    their corner pixel (255), train images have 0 there."""
    raw = tmp_path / "raw"
    raw.mkdir()
    x, y = synthetic_images(120, size=12, seed=1)
    x[:, 0, 0] = 0
    write_idx(x, y, raw / "train", gz=True)
    xt, yt = synthetic_images(40, size=12, seed=2)
    xt[:, 0, 0] = 255
    write_idx(xt, yt, raw / "t10k", gz=True)
    return raw


def _cfg(path, **kw):
    return PrepareConfig(**{"source": "idx", "path": str(path), "image_size": 12, "calibration_size": 16,
                            "shard_size": 32, **kw})


def test_idx_t10k_files_are_exactly_the_test_split(mnist_like, tmp_path):
    m = prepare(_cfg(mnist_like), tmp_path / "out")
    assert m["num_test"] == 40 and m["num_train"] + m["num_val"] == 120
    assert m["test_split"] == "designated"
    assert m["split_files"]["test"] == {"t10k-images-idx3-ubyte.gz": 40}
    assert m["split_files"]["train"] == {"train-images-idx3-ubyte.gz": m["num_train"]}
    assert m["split_files"]["val"] == {"train-images-idx3-ubyte.gz": m["num_val"]}
    x_test, _ = load_split_arrays(tmp_path / "out" / "test")
    assert (x_test[:, 0, 0, 0] == 255).all()  # every test image came from t10k
    for split in ("train", "val", "calib"):
        xs, _ = load_split_arrays(tmp_path / "out" / split)
        assert (xs[:, 0, 0, 0] == 0).all(), split  # and none of t10k leaked elsewhere


def test_pooled_param_restores_the_random_split(mnist_like, tmp_path):
    m = prepare(_cfg(mnist_like, test_split="pooled", test_fraction=0.25), tmp_path / "out")
    assert m["test_split"] == "random" and m["num_test"] == 40
    assert set(m["split_files"]["test"]) == {"t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"}


def test_only_test_files_fall_back_to_a_random_split(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    x, y = synthetic_images(60, size=12)
    write_idx(x, y, raw / "t10k")
    m = prepare(_cfg(raw), tmp_path / "out")
    assert m["test_split"] == "random" and m["num_train"] > 0


def _pngs(folder, n, value):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(folder / f"{i}.png")


def test_folder_test_subfolder_is_the_test_split(tmp_path):
    root = tmp_path / "imgs"
    for cls, v in (("cat", 10), ("dog", 200)):
        _pngs(root / "train" / cls, 10, v)
        _pngs(root / "test" / cls, 3, v)
    m = prepare(PrepareConfig(source="folder", path=str(root), image_size=8, calibration_size=4), tmp_path / "out")
    assert m["test_split"] == "designated" and m["num_test"] == 6
    assert m["split_files"]["test"] == {"test": 6}
    assert load_meta(tmp_path / "out")["class_names"] == ["cat", "dog"]


def test_folder_without_train_subfolder_takes_classes_beside_test(tmp_path):
    root = tmp_path / "imgs"
    for cls, v in (("cat", 10), ("dog", 200)):
        _pngs(root / cls, 10, v)
        _pngs(root / "test" / cls, 2, v)
    m = prepare(PrepareConfig(source="folder", path=str(root), image_size=8, calibration_size=4), tmp_path / "out")
    assert m["num_test"] == 4 and m["num_classes"] == 2


def test_folder_test_with_an_unknown_class_is_refused(tmp_path):
    root = tmp_path / "imgs"
    _pngs(root / "train" / "cat", 4, 10)
    _pngs(root / "train" / "dog", 4, 200)
    _pngs(root / "test" / "cow", 2, 90)
    with pytest.raises(DataError, match=r"test: class folder\(s\) \['cow'\] are not among the training classes"):
        prepare(PrepareConfig(source="folder", path=str(root), image_size=8, calibration_size=4), tmp_path / "out")


def test_a_class_named_test_is_still_a_class(tmp_path):
    root = tmp_path / "imgs"
    _pngs(root / "test", 6, 10)  # images, not class folders
    _pngs(root / "other", 6, 200)
    m = prepare(PrepareConfig(source="folder", path=str(root), image_size=8, calibration_size=4, test_fraction=0.3),
                tmp_path / "out")
    assert m["test_split"] == "random" and m["num_classes"] == 2
