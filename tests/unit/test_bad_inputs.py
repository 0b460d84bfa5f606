"""Bad inputs and faults, as a user meets them: each through the real `edgeqat` command.

Every case writes its own tiny files and asserts the contract of a refusal: exit 2, one
error line naming the file, key or value at fault, no traceback, and nothing new in the
workspace (no half-written output, no temp leftover, no MLflow store). A few cases are
faults rather than refusals (a `kill -9` mid-write, a stalled or vanishing webhook client).
"""

from __future__ import annotations

import base64
import marshal
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO

BIN = Path(sys.executable).parent


def edgeqat(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run([str(BIN / "edgeqat"), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def refused(proc: subprocess.CompletedProcess, *named: object, ws: Path, before: set[str]) -> str:
    """The refusal contract; returns the error text."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert err.count("edgeqat: error:") == 1, err[-3000:]
    for n in named:
        assert str(n) in err, f"{n!r} not named in:\n{err[-3000:]}"
    new = tree(ws) - before
    assert not new, f"left behind: {sorted(new)}"
    return err


def params(ws: Path, **sections: dict) -> Path:
    """The shipped params.yaml with some keys changed, written to the workspace."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for sec, keys in sections.items():
        raw.setdefault(sec, {}).update(keys)
    f = ws / "params.yaml"
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    return f


def prepare_with(ws: Path, **prepare: object) -> tuple[subprocess.CompletedProcess, set[str]]:
    params(ws, prepare=prepare)
    before = tree(ws)
    return edgeqat("stage", "prepare", "--params", "params.yaml", "--prepared", "prep", "--prepare-metrics", "m/prepare.json",
                   cwd=ws), before


def npz(path: Path, x: np.ndarray, y: np.ndarray | None = None, **more: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=np.arange(len(x)) % 3 if y is None else y, **more)
    return path


def gray_images(n: int = 30, size: int = 8, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 200, (n, size, size)).astype(dtype)


def image_folder(root: Path, classes=("a", "b", "c"), per_class: int = 10) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


# --- params -------------------------------------------------------------------------


def test_missing_params_file(tmp_path):
    before = tree(tmp_path)
    refused(edgeqat("check-params", "--params", "nope.yaml", cwd=tmp_path), "nope.yaml", "not found",
            ws=tmp_path, before=before)


def test_params_file_that_is_not_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("train: [epochs: 3\n")
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "params.yaml", "not valid YAML", ws=tmp_path, before=before)


def test_unknown_param_key(tmp_path):
    params(tmp_path, train={"epoch": 3})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "train.epoch: unknown key", ws=tmp_path, before=before)


@pytest.mark.parametrize("value", [True, "3", 3.0], ids=["bool", "string", "float"])
def test_epochs_of_the_wrong_type(tmp_path, value):  # row 10
    params(tmp_path, train={"epochs": value})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "train.epochs", repr(value), ws=tmp_path, before=before)


def test_out_of_range_fraction(tmp_path):
    params(tmp_path, prepare={"val_fraction": 1.5})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "prepare.val_fraction", "1.5", ws=tmp_path, before=before)


def test_unknown_source(tmp_path):
    params(tmp_path, prepare={"source": "csv"})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "prepare.source", "'csv'", ws=tmp_path, before=before)


def test_unknown_device_is_refused_before_prepare_runs(tmp_path):  # row 8
    params(tmp_path, validate={"devices": ["rpi4", "cortex_m7", "rpi5"]})
    before = tree(tmp_path)
    err = refused(edgeqat("check-params", cwd=tmp_path), "validate.devices", "'rpi5'", "rpi_zero2w", "cortex_m4",
                  ws=tmp_path, before=before)
    assert "params.yaml: ok" not in err
    proc = edgeqat("stage", "prepare", "--params", "params.yaml", "--prepared", "prep", "--prepare-metrics", "m/p.json", cwd=tmp_path)
    refused(proc, "validate.devices", "'rpi5'", ws=tmp_path, before=before)


def test_registering_a_variant_validate_does_not_validate_is_refused(tmp_path):
    """The registry's device gate reads validate's verdicts: they must be the registered file's."""
    params(tmp_path, register={"variant": "fp32"}, validate={"model": "qat_int8"})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "register.variant", "'fp32'", "validate.model", "'qat_int8'",
            ws=tmp_path, before=before)


def test_register_refuses_a_summary_that_validated_another_variant(tmp_path):
    """params.yaml edited after validate ran: the summary's verdicts are not the registered file's."""
    params(tmp_path, register={"variant": "fp32"}, validate={"model": "fp32"})
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.json").write_text(json.dumps(
        {"validated_model": "qat_int8", "validation_passed": True, "variants": {"fp32": {"accuracy": 0.9}}}))
    (tmp_path / "models" / "tflite").mkdir(parents=True)
    (tmp_path / "models" / "tflite" / "model_card.json").write_text(json.dumps({"variants": {"fp32": {"file": "fp32.tflite"}}}))
    before = tree(tmp_path)
    refused(edgeqat("stage", "register", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
            "summary.json", "'qat_int8'", "register.variant", "'fp32'", ws=tmp_path, before=before)


def test_per_tensor_with_a_variant_it_cannot_honour_is_refused(tmp_path):
    params(tmp_path, convert={"per_channel": False})  # the shipped variants include both
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "convert.per_channel", "'ptq_dynamic'", "'ptq_int16x8'",
            "convert.variants", ws=tmp_path, before=before)


def test_unknown_recommend_device(tmp_path):  # row 8
    params(tmp_path, recommend={"devices": ["cortex_m4", "nrf52"]})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "recommend.devices", "'nrf52'", ws=tmp_path, before=before)


def _profile(path: Path, **changes: object) -> Path:
    shipped = resources.files("edgeqat.devices") / "profiles" / "rpi4.yaml"
    raw = yaml.safe_load(shipped.read_text())
    raw.update(name="my_board", title="my board")
    for k, v in changes.items():
        raw[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_device_of_profiles_dir_is_known(tmp_path):  # row 8: profiles_dir adds names
    _profile(tmp_path / "boards" / "my_board.yaml")
    params(tmp_path, validate={"devices": ["rpi4", "cortex_m7", "my_board"], "profiles_dir": "boards"})
    proc = edgeqat("check-params", cwd=tmp_path)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_unknown_speed_model_row_names_the_profile_file(tmp_path, sine_tflite):  # row 12
    shipped = yaml.safe_load((resources.files("edgeqat.devices") / "profiles" / "rpi4.yaml").read_text())
    f = _profile(tmp_path / "boards" / "my_board.yaml", speed_model={**shipped["speed_model"], "rows": ["no-such-row"]})
    params(tmp_path, validate={"devices": ["rpi4", "cortex_m7", "my_board"], "profiles_dir": "boards"})
    before = tree(tmp_path)
    refused(edgeqat("check-params", cwd=tmp_path), "boards/my_board.yaml", "speed_model.rows", "'no-such-row'",
            ws=tmp_path, before=before)
    proc = edgeqat("validate", sine_tflite, "--device", f, "--no-emulate", cwd=tmp_path)  # a profile given by file
    refused(proc, f, "speed_model.rows", ws=tmp_path, before=before)


# --- raw data -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_npz_with_non_finite_pixels(tmp_path, bad):  # row 2
    x = gray_images(dtype=np.float32) / 255.0
    x[3, 1, 1] = x[4, 2, 2] = x[4, 3, 3] = bad
    f = npz(tmp_path / "raw" / "d.npz", x)
    proc, before = prepare_with(tmp_path, source="npz", path="raw/d.npz")
    refused(proc, "raw/d.npz", "3 NaN/Inf pixel value(s) in 2 image(s)", ws=tmp_path, before=before)


@pytest.mark.parametrize("array", ["x", "y", "class_names"])
def test_npz_with_an_object_array(tmp_path, array):  # row 4
    x, y = gray_images(), np.arange(30) % 3
    arrays = {"x": x, "y": y, "class_names": np.array(["a", "b", "c"])}
    arrays[array] = np.array([object()] * len(arrays[array]), dtype=object)
    f = tmp_path / "raw" / "d.npz"
    f.parent.mkdir()
    np.savez(f, **arrays)  # pickles the object array
    proc, before = prepare_with(tmp_path, source="npz", path="raw/d.npz")
    refused(proc, "raw/d.npz", f"array {array!r}", "dtype object", ws=tmp_path, before=before)


def test_npz_that_is_not_a_zip(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "d.npz").write_bytes(b"not a zip at all")
    proc, before = prepare_with(tmp_path, source="npz", path="raw/d.npz")
    refused(proc, "raw/d.npz", "not a readable .npz", ws=tmp_path, before=before)


def test_npz_missing(tmp_path):
    proc, before = prepare_with(tmp_path, source="npz", path="raw/none.npz")
    refused(proc, "raw/none.npz", "not found", ws=tmp_path, before=before)


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A real 1-bit PNG of a huge all-black canvas: a few KB on disk, streamed, never in memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z, row, idat = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8), []
    for _ in range(height):
        idat.append(z.compress(row))
    idat.append(z.flush())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [14000, 10000], ids=["195Mpx", "100Mpx-below-PIL-error-limit"])
def test_png_decompression_bomb(tmp_path, side):  # row 3
    image_folder(tmp_path / "raw")
    bomb = _png_declaring(tmp_path / "raw" / "b" / "bomb.png", side, side)
    assert bomb.stat().st_size < 200_000
    proc, before = prepare_with(tmp_path, source="folder", path="raw")
    refused(proc, "raw/b/bomb.png", "decompression bomb", ws=tmp_path, before=before)


def test_symlink_to_an_image_outside_the_folder(tmp_path):  # row 6
    image_folder(tmp_path / "raw")
    outside = tmp_path / "elsewhere.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside)
    (tmp_path / "raw" / "a" / "link.png").symlink_to(outside)
    proc, before = prepare_with(tmp_path, source="folder", path="raw")
    refused(proc, "raw/a/link.png", "prepare.follow_symlinks", ws=tmp_path, before=before)


def test_symlinked_class_folder(tmp_path):  # row 6
    image_folder(tmp_path / "raw")
    image_folder(tmp_path / "other", classes=("d",))
    (tmp_path / "raw" / "d").symlink_to(tmp_path / "other" / "d", target_is_directory=True)
    proc, before = prepare_with(tmp_path, source="folder", path="raw")
    refused(proc, "raw/d", "class folder is a symlink", ws=tmp_path, before=before)


def test_symlinks_are_read_when_the_user_opts_in(tmp_path):  # row 6: the opt-in works
    image_folder(tmp_path / "raw")
    image_folder(tmp_path / "other", classes=("d",))
    (tmp_path / "raw" / "d").symlink_to(tmp_path / "other" / "d", target_is_directory=True)
    proc, _ = prepare_with(tmp_path, source="folder", path="raw", follow_symlinks=True)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((tmp_path / "prep" / "meta.json").read_text())["class_names"] == ["a", "b", "c", "d"]


def test_empty_class_folder(tmp_path):
    image_folder(tmp_path / "raw")
    (tmp_path / "raw" / "z").mkdir()
    proc, before = prepare_with(tmp_path, source="folder", path="raw")
    refused(proc, "raw/z", "class folder is empty", ws=tmp_path, before=before)


def test_unreadable_image(tmp_path):
    image_folder(tmp_path / "raw")
    (tmp_path / "raw" / "c" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    proc, before = prepare_with(tmp_path, source="folder", path="raw")
    refused(proc, "raw/c/broken.png", "cannot decode image", ws=tmp_path, before=before)


def _idx(tmp_path: Path) -> tuple[Path, Path]:
    from edgeqat.data.idx import write_idx

    (tmp_path / "raw").mkdir()
    return write_idx(gray_images(), np.arange(30) % 3, tmp_path / "raw" / "train")


def test_idx_bad_magic(tmp_path):
    img, _ = _idx(tmp_path)
    img.write_bytes(b"\x1f" + img.read_bytes()[1:])
    proc, before = prepare_with(tmp_path, source="idx", path="raw")
    refused(proc, img.relative_to(tmp_path), "not an IDX file", ws=tmp_path, before=before)


def test_idx_truncated(tmp_path):
    img, _ = _idx(tmp_path)
    img.write_bytes(img.read_bytes()[:-50])
    proc, before = prepare_with(tmp_path, source="idx", path="raw")
    refused(proc, img.relative_to(tmp_path), ws=tmp_path, before=before)


def test_idx_missing_labels_file(tmp_path):
    img, lab = _idx(tmp_path)
    lab.unlink()
    proc, before = prepare_with(tmp_path, source="idx", path="raw")
    refused(proc, img.relative_to(tmp_path), lab.name, ws=tmp_path, before=before)


# --- model files --------------------------------------------------------------------


def lambda_h5(path: Path, marker: Path) -> Path:
    """An .h5 Keras model whose Lambda layer's function creates ``marker`` (written with h5py,
    in the layout tf-keras 2.21 saves: model_config JSON of a Sequential model)."""
    import json

    import h5py

    fn = eval(f"lambda x: (__import__('os').system('touch {marker}'), x)[1]")  # noqa: S307 - the attack
    code = base64.encodebytes(marshal.dumps(fn.__code__)).decode()
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8, 8, 1], "dtype": "float32",
                                                "name": "input_1"}},
        {"class_name": "Lambda", "config": {"name": "evil", "trainable": True, "dtype": "float32",
                                            "function": [code, None, None], "function_type": "lambda",
                                            "module": "__main__", "output_shape": None, "output_shape_type": "raw",
                                            "output_shape_module": None, "arguments": {}}},
        {"class_name": "Flatten", "config": {"name": "flatten", "dtype": "float32"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 3, "activation": "softmax", "dtype": "float32"}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.21.0"
        f.attrs["backend"] = "tensorflow"
        f.create_group("model_weights")
    return path


@pytest.fixture
def prepared_8x8(tmp_path) -> Path:
    npz(tmp_path / "raw" / "d.npz", gray_images())
    proc, _ = prepare_with(tmp_path, source="npz", path="raw/d.npz", image_size=8, calibration_size=4)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "prep"


def test_h5_with_a_lambda_layer_never_runs_its_code(tmp_path, prepared_8x8):  # row 1
    marker = tmp_path / "PWNED"
    lambda_h5(tmp_path / "evil.h5", marker)
    params(tmp_path, prepare={"source": "npz", "path": "raw/d.npz", "image_size": 8, "calibration_size": 4},
           train={"from_model": "evil.h5"})
    before = tree(tmp_path)
    proc = edgeqat("stage", "train", "--params", "params.yaml", "--prepared", "prep", "--fp32-model", "models/fp32.keras",
                   "--train-metrics", "m/train.json", "--train-history", "m/h.csv", cwd=tmp_path)
    assert not marker.exists(), "the Lambda's code ran"
    refused(proc, "evil.h5", "Lambda", "sequential/evil", "train.trust_model_code", ws=tmp_path, before=before)


def test_trust_model_code_is_the_explicit_opt_in(tmp_path, prepared_8x8):  # row 1: the documented opt-in
    marker = tmp_path / "RAN"
    lambda_h5(tmp_path / "mine.h5", marker)
    params(tmp_path, prepare={"source": "npz", "path": "raw/d.npz", "image_size": 8, "calibration_size": 4},
           train={"from_model": "mine.h5", "trust_model_code": True})
    edgeqat("stage", "train", "--params", "params.yaml", "--prepared", "prep", "--fp32-model", "models/fp32.keras",
            "--train-metrics", "m/train.json", "--train-history", "m/h.csv", cwd=tmp_path)
    assert marker.exists()  # the user's own Lambda ran, as they decided (the file has no weights, so it stops there)


def test_lambda_reference_model_never_runs_its_code(tmp_path, prepared_8x8, sine_tflite):  # row 1: validate --reference
    marker = tmp_path / "PWNED"
    lambda_h5(tmp_path / "evil.h5", marker)
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "evil.h5",
                   "--no-emulate", cwd=tmp_path)
    assert not marker.exists(), "the Lambda's code ran"
    refused(proc, "evil.h5", "Lambda", ws=tmp_path, before=before)


def _pb_field(number: int, data: bytes) -> bytes:
    """One length-delimited protobuf field (lengths here stay below 2**14: two varint bytes at most)."""
    n = len(data)
    size = bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7])
    return bytes([(number << 3) | 2]) + size + data


def test_savedmodel_with_a_lambda_layer(tmp_path, prepared_8x8, sine_tflite):
    import json

    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"")
    node = json.dumps({"class_name": "Lambda", "name": "evil", "config": {"name": "evil", "function": ["AAAA", None, None],
                                                                          "function_type": "lambda"}}).encode()
    # SavedMetadata{nodes: [SavedObject{node_path: "root.layer-1", metadata: <json>}]} (tf_keras' saved_metadata.proto)
    (sm / "keras_metadata.pb").write_bytes(_pb_field(1, _pb_field(3, b"root.layer-1") + _pb_field(5, node)))
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "sm",
                   "--no-emulate", cwd=tmp_path)
    refused(proc, "sm", "evil is a Lambda", ws=tmp_path, before=before)


def test_keras_zip_with_a_lambda_layer(tmp_path, prepared_8x8, sine_tflite):
    import json

    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "Functional", "config": {"name": "m", "layers": [
            {"class_name": "Lambda", "module": "keras.layers", "config": {"name": "l", "function": {
                "class_name": "__lambda__", "config": {"code": "AAAA"}}}}]}}))
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "evil.keras",
                   "--no-emulate", cwd=tmp_path)
    refused(proc, "evil.keras", "Lambda", ws=tmp_path, before=before)


def test_unknown_custom_class_is_refused(tmp_path, prepared_8x8, sine_tflite):
    import json

    import h5py

    with h5py.File(tmp_path / "custom.h5", "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "MyLayer", "registered_name": "MyLayer", "config": {"name": "mine"}}]}})
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "custom.h5",
                   "--no-emulate", cwd=tmp_path)
    refused(proc, "custom.h5", "'MyLayer'", "s/mine", ws=tmp_path, before=before)


def test_tf_op_layer_that_writes_files_is_refused(tmp_path, prepared_8x8, sine_tflite):
    import json

    import h5py

    op = {"class_name": "TFOpLambda", "config": {"name": "tf.io.write_file", "function": "io.write_file"},
          "inbound_nodes": [["input_1", 0, 0, {"contents": "owned"}]]}
    with h5py.File(tmp_path / "ops.h5", "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": {"name": "m", "layers": [op]}})
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "ops.h5",
                   "--no-emulate", cwd=tmp_path)
    refused(proc, "ops.h5", "tf.io.write_file", ws=tmp_path, before=before)


def test_wrong_model_suffix(tmp_path, prepared_8x8, sine_tflite):
    (tmp_path / "model.txt").write_text("hello")
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "model.txt",
                   "--no-emulate", cwd=tmp_path)
    refused(proc, "model.txt", "Keras model", ws=tmp_path, before=before)


def test_missing_model(tmp_path, prepared_8x8, sine_tflite):
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "gone.keras",
                   "--no-emulate", cwd=tmp_path)
    refused(proc, "gone.keras", "model not found", ws=tmp_path, before=before)


# --- .tflite files ------------------------------------------------------------------


@pytest.fixture
def sine_tflite(tmp_path) -> Path:
    """A real .tflite (tflite-micro's sine model, input (1, 1)) copied into the workspace."""
    src = resources.files("tflite_micro") / "python" / "tflite_micro" / "sine_float.tflite"
    dest = tmp_path / "sine.tflite"
    dest.write_bytes(src.read_bytes())
    return dest


def test_truncated_tflite_is_named(tmp_path, sine_tflite):  # row 11
    f = tmp_path / "cut.tflite"
    f.write_bytes(sine_tflite.read_bytes()[:600])
    before = tree(tmp_path)
    refused(edgeqat("validate", f, "--device", "rpi4", "--no-emulate", cwd=tmp_path), f, ws=tmp_path, before=before)


def test_bit_flipped_tflite_is_named(tmp_path, sine_tflite):  # row 11
    blob = bytearray(sine_tflite.read_bytes())
    blob[0] ^= 0xFF  # the root table offset: the flatbuffer verifier refuses it
    f = tmp_path / "flipped.tflite"
    f.write_bytes(bytes(blob))
    before = tree(tmp_path)
    err = refused(edgeqat("validate", f, "--device", "rpi4", "--no-emulate", cwd=tmp_path), f, ws=tmp_path,
                  before=before)
    assert "model bytes" not in err


def test_not_a_tflite(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"\0" * 64)
    before = tree(tmp_path)
    refused(edgeqat("validate", f, "--device", "rpi4", cwd=tmp_path), f, "TFL3", ws=tmp_path, before=before)


def test_data_of_another_shape_than_the_model_is_bad_input(tmp_path, prepared_8x8, sine_tflite):  # row 9
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--no-emulate", cwd=tmp_path)
    refused(proc, "8x8x1", "expects 1", "sine.tflite", ws=tmp_path, before=before)
    assert "FAIL" not in proc.stdout


# --- reports and tracking -----------------------------------------------------------


def test_corrupt_summary_json_in_report(tmp_path):  # row 5
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.json").write_text('{"variants": [1, 2')
    before = tree(tmp_path)
    refused(edgeqat("report", cwd=tmp_path), "reports/summary.json", "not valid JSON", ws=tmp_path, before=before)


def test_summary_json_that_is_not_a_summary(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.json").write_text('{"variants": 3}')
    before = tree(tmp_path)
    refused(edgeqat("report", cwd=tmp_path), "reports/summary.json", "not an edgeqat summary", ws=tmp_path,
            before=before)


def test_metrics_json_that_is_not_an_object(tmp_path):
    params(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "train.json").write_text("[0.9]")
    before = tree(tmp_path)
    proc = edgeqat("stage", "track", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})
    refused(proc, "metrics/train.json", "expected a JSON object", ws=tmp_path, before=before)


def test_report_without_summary(tmp_path):
    before = tree(tmp_path)
    refused(edgeqat("report", cwd=tmp_path), "reports/summary.json", "not found", ws=tmp_path, before=before)


def test_corrupt_metrics_json_in_track_logs_nothing(tmp_path):  # row 5
    params(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "train.json").write_text('{"test_accuracy": 0.9}')
    (tmp_path / "metrics" / "evaluate.json").write_bytes(b'{"acc\xff')
    before = tree(tmp_path)
    proc = edgeqat("stage", "track", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})
    refused(proc, "metrics/evaluate.json", "not valid JSON", ws=tmp_path, before=before)  # no mlflow.db either


def test_kill_9_mid_write_leaves_nothing_on_the_next_run(tmp_path):  # row 7
    code = ("import os, signal, sys\n"
            "from edgeqat.io import atomic_path\n"
            "with atomic_path(sys.argv[1], is_dir=True) as tmp:\n"
            "    (tmp / 'events.out').write_text('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    tb = tmp_path / "logs" / "tensorboard"
    proc = subprocess.run([sys.executable, "-c", code, str(tb / "train")], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in tb.iterdir()]
    assert len(left) == 1 and left[0].startswith(".train.") and left[0].endswith(".tmp")  # what kill -9 leaves
    (tb / ".train.legacy12.tmp").mkdir()  # an older version's leftover, without a pid
    from edgeqat.io import is_temp_leftover, write_text

    assert all(is_temp_leftover(n) for n in os.listdir(tb))
    write_text(tb / "train", "next run\n")
    assert sorted(os.listdir(tb)) == ["train"]


def test_a_live_writers_temp_is_kept(tmp_path):
    from edgeqat.io import atomic_path, remove_stale_temps

    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
        assert remove_stale_temps(tmp_path) == []  # ours: the pid is alive
        assert tmp.exists()
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_track_never_logs_temp_leftovers(tmp_path):  # row 7
    from edgeqat.lifecycle.tracking import get_run, log_run

    tb = tmp_path / "logs" / "tensorboard"
    (tb / "train").mkdir(parents=True)
    (tb / "train" / "events.out").write_text("ok")
    stale = tb / ".train.4194399.abcdefgh.tmp"  # a pid above Linux's pid_max: its writer is dead
    stale.mkdir()
    (stale / "events.out").write_text("half")
    info = log_run(experiment="t", params={}, metrics={}, curves={}, tags={}, artifacts=[(tb, "tensorboard")],
                   uri=f"sqlite:///{tmp_path}/mlflow.db", root=tmp_path)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=info["tracking_uri"])
    paths = []
    todo = ["tensorboard"]
    while todo:
        for a in client.list_artifacts(info["run_id"], todo.pop()):
            (todo.append(a.path) if a.is_dir else paths.append(a.path))
    assert paths == ["tensorboard/train/events.out"]
    assert not stale.exists()
    assert get_run(info["run_id"], info["tracking_uri"]).info.status == "FINISHED"


# --- webhook receiver ---------------------------------------------------------------


SECRET = "a-webhook-secret-of-24ch"


def test_webhook_serve_refuses_a_short_secret(tmp_path):  # row 14
    params(tmp_path)
    before = tree(tmp_path)
    proc = edgeqat("webhook", "serve", cwd=tmp_path, env={"EDGEQAT_WEBHOOK_SECRET": "short",
                                                          "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    refused(proc, "EDGEQAT_WEBHOOK_SECRET", "at least 16 characters", ws=tmp_path, before=before)


def test_one_secret_rule_for_serve_and_install():  # row 14
    from edgeqat.errors import EdgeqatError
    from edgeqat.adapters.webhook.server import Receiver, check_secret, make_server

    for cmd in ("serve", "install"):
        with pytest.raises(EdgeqatError, match="at least 16"):
            check_secret("x" * 15, cmd)
        assert check_secret("x" * 16, cmd) == "x" * 16
    with pytest.raises(EdgeqatError, match="at least 16"):
        make_server(None, "x" * 15)  # type: ignore[arg-type]


@pytest.fixture
def receiver(monkeypatch, tmp_path):
    """A real receiver on a loopback port, with a 1 s request deadline to keep the test short."""
    from edgeqat.adapters.webhook import server as webhook
    from edgeqat.config import RegisterConfig

    monkeypatch.setattr(webhook, "REQUEST_DEADLINE_S", 1.0)
    rcv = webhook.Receiver(None, RegisterConfig(), tmp_path / "deploy")
    server = webhook.make_server(rcv, SECRET, "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def _health(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        return s.recv(4096)


def test_stalled_connections_hold_a_bounded_pool_and_time_out(receiver):  # row 13
    port = receiver.server_address[1]
    base = threading.active_count()
    stalled = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n")  # headers never finished
        stalled.append(s)
    time.sleep(0.3)
    assert threading.active_count() - base <= 4  # a reader and a worker thread, not one per connection
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # each times out after 1 s and is closed by the server
        try:
            if all(s.recv(1) == b"" for s in stalled):
                break
        except (socket.timeout, ConnectionError):
            pass
    assert all(s.recv(1) == b"" for s in stalled)
    assert b"200" in _health(port).split(b"\r\n")[0]
    for s in stalled:
        s.close()


def test_client_disconnects_are_one_log_line(receiver, capfd):  # row 15
    port = receiver.server_address[1]
    for i in range(6):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:
            s.sendall(b'POST / HTTP/1.1\r\nContent-Length: 500\r\n\r\n{"partial": ')  # the body never comes
        else:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # nor the end of the headers
        time.sleep(0.2)  # the server is now blocked reading from this client
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a reset: the server's read fails with ECONNRESET
    time.sleep(0.5)
    assert b"200" in _health(port).split(b"\r\n")[0]
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 6 and all(ln.startswith("[edgeqat] webhook:") for ln in lines), err


def test_the_bounded_receiver_still_answers_signed_events(receiver):
    import json
    import urllib.request

    from edgeqat.adapters.webhook.server import sign

    body = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "now",
                       "data": {"name": "someone-else", "alias": "champion", "version": "1"}}).encode()
    ts = str(int(time.time()))
    req = urllib.request.Request(f"http://127.0.0.1:{receiver.server_address[1]}/", data=body, method="POST",
                                 headers={"X-MLflow-Signature": sign(SECRET, "d1", ts, body), "X-MLflow-Timestamp": ts,
                                          "X-MLflow-Delivery-Id": "d1"})
    with urllib.request.urlopen(req, timeout=10) as res:
        assert res.status == 200 and b"ignored" in res.read()


# --- .keras zip caps (issue 27 item 8, branch i25-keras3) --------------------------------
# Real zip bombs: a deflate stream of a repeated byte, with the right CRC, so that a reader
# that trusted the archive would really unpack gigabytes. edgeqat refuses them from the zip's
# central directory before reading any member.

GiB = 1 << 30


def _deflated_run(byte: bytes, size: int) -> tuple[bytes, int]:
    """(raw deflate stream, CRC-32) of ``size`` copies of ``byte``: a fully flushed block
    compresses every 64 MiB chunk to the same bytes, so it is made once and repeated."""
    chunk_size = 64 << 20
    assert size % chunk_size == 0
    chunk = byte * chunk_size
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // chunk_size):
        crc = zlib.crc32(chunk, crc)
    return block * (size // chunk_size) + c.flush(zlib.Z_FINISH), crc


def _zip_raw(path: Path, members: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip of already-deflated members (name, stream, crc, unpacked size), as zipfile
    would write them; zipfile itself has no way to take a pre-compressed stream."""
    out, central = bytearray(), bytearray()
    for name, raw, crc, size in members:
        n, offset = name.encode(), len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(raw), size, len(n), 0) + n + raw
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(raw), size, len(n), 0,
                               0, 0, 0, 0, offset) + n
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                                 len(out), 0)
    path.write_bytes(bytes(out))
    return path


def _member(name: str, data: bytes) -> tuple[str, bytes, int, int]:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return name, c.compress(data) + c.flush(), zlib.crc32(data), len(data)


META = _member("metadata.json", b'{"keras_version": "3.15.1"}')


def _timed(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """edgeqat(...) under /usr/bin/time: (process, wall seconds, CPU seconds (user + system),
    peak RSS in MiB)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["/usr/bin/time", "-f", "usage: %e %U %S %M", str(BIN / "edgeqat"), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    *lines, stats = proc.stderr.strip().splitlines()
    proc.stderr = "\n".join(lines) + "\n"
    wall, user, system, kib = stats.removeprefix("usage: ").split()
    return proc, float(wall), float(user) + float(system), int(kib) / 1024


# What refusing a bomb may cost beyond the same command refusing a file that is not a zip at all
# (the same code path up to the zip's directory). Checking after unpacking costs the member's size
# in memory when it is read whole (1.5 or 3 GiB), or, streamed, seconds of CPU: inflating the
# members through zipfile took 4.4 s (config.json, 1.5 GiB) and 9.7 s (weights, 3 GiB) of CPU on
# the 2-core test machine (1e2652d, load 7). CPU time, not wall time: on a loaded machine a
# process waits longer, it does not work more. 08117f3: 3.9 GB RSS; 0.8 GB RSS and 45 s.
EXTRA_RSS_MIB, EXTRA_CPU_S = 256, 1.0


def _refused_cheaply(cwd: Path, plain: tuple, bomb: tuple, *named: str) -> None:
    """``bomb`` is refused (naming ``named``) at no more memory and CPU than ``plain``, the same
    command given a .keras that is not a zip; and neither leaves anything behind."""
    before = tree(cwd)
    base, _, base_cpu, base_rss = _timed(*plain, cwd=cwd)
    refused(base, "not a readable .keras archive", ws=cwd, before=before)
    proc, wall, cpu, rss = _timed(*bomb, cwd=cwd)
    refused(proc, *named, ws=cwd, before=before)
    print(f"\n{named[0]}: refused in {wall:.1f} s, {cpu:.2f} s CPU, peak RSS {rss:.0f} MiB; the same command on a "
          f"file that is not a zip: {base_cpu:.2f} s CPU, {base_rss:.0f} MiB")
    assert rss - base_rss < EXTRA_RSS_MIB, f"{rss - base_rss:.0f} MiB more than a plain refusal: the member was read"
    assert cpu - base_cpu < EXTRA_CPU_S, f"{cpu - base_cpu:.2f} s more CPU than a plain refusal: it was unpacked"


def test_keras_config_json_bomb_is_refused_from_the_zip_directory(tmp_path, prepared_8x8, sine_tflite):
    raw, crc = _deflated_run(b" ", 3 * GiB // 2)  # 1.5 GiB of whitespace, 1.5 MB zipped
    _zip_raw(tmp_path / "bomb.keras", [META, ("config.json", raw, crc, 3 * GiB // 2)])
    assert zipfile.ZipFile(tmp_path / "bomb.keras").getinfo("config.json").file_size == 3 * GiB // 2
    (tmp_path / "plain.keras").write_text("not a zip")
    command = ("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--no-emulate", "--reference")
    _refused_cheaply(tmp_path, (*command, "plain.keras"), (*command, "bomb.keras"),
                     "bomb.keras: member config.json would unpack to 1.50 GiB (limit 16.0 MiB)")


def test_keras_weights_bomb_is_refused_before_unpacking(tmp_path, prepared_8x8):
    import json

    raw, crc = _deflated_run(b"\0", 3 * GiB)  # 3 GiB of zeros, 3 MB zipped
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 8, 8, 1], "name": "in"}},
        {"class_name": "Flatten", "config": {"name": "flat"}}, {"class_name": "Dense", "config": {"name": "d", "units": 3}}]}}
    _zip_raw(tmp_path / "bomb.keras", [META, _member("config.json", json.dumps(config).encode()),
                                       ("model.weights.h5", raw, crc, 3 * GiB)])
    (tmp_path / "plain.keras").write_text("not a zip")
    for model in ("plain", "bomb"):  # the same command, train.from_model naming each
        params(tmp_path, prepare={"source": "npz", "path": "raw/d.npz", "image_size": 8, "calibration_size": 4},
               train={"from_model": f"{model}.keras"}).rename(tmp_path / f"{model}.yaml")
    runs = [("stage", "train", "--params", f"{model}.yaml", "--prepared", "prep", "--fp32-model", "models/fp32.keras")
            for model in ("plain", "bomb")]
    _refused_cheaply(tmp_path, *runs, "bomb.keras: member model.weights.h5 would unpack to 3.00 GiB (limit 1.00 GiB)")


def test_keras_config_nested_too_deep_is_refused(tmp_path, prepared_8x8, sine_tflite):
    deep = b"[" * 5000 + b"]" * 5000  # 10 kB of JSON: json.loads copes, walkers of it would not
    _zip_raw(tmp_path / "deep.keras", [_member("config.json", deep)])
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "deep.keras",
                   "--no-emulate", cwd=tmp_path)
    refused(proc, "deep.keras: config.json is nested deeper than 100 levels", ws=tmp_path, before=before)


def test_keras_file_that_is_not_a_zip(tmp_path, prepared_8x8, sine_tflite):
    (tmp_path / "plain.keras").write_text("not a zip")
    before = tree(tmp_path)
    proc = edgeqat("validate", sine_tflite, "--device", "rpi4", "--data", "prep", "--reference", "plain.keras",
                   "--no-emulate", cwd=tmp_path)
    refused(proc, "plain.keras: not a readable .keras archive", ws=tmp_path, before=before)


def test_packed_savedmodel_variables_count_as_weights_in_the_zip_caps(tmp_path):
    """models/fp32.keras made from a model.export() SavedModel is a zip of its files: variables
    above the 64 MiB cap of other members are weights (1 GiB cap); anything else is not."""
    from edgeqat.errors import ModelError
    from edgeqat.models.exported import PACKED
    from edgeqat.models.io import check_model_file

    raw, crc = _deflated_run(b"\0", 128 << 20)
    marker = _member(PACKED, b'{"format": "saved_model"}')
    ok = _zip_raw(tmp_path / "fp32.keras", [marker, _member("saved_model/saved_model.pb", b"pb"),
                                            ("saved_model/variables/variables.data-00000-of-00001", raw, crc, 128 << 20)])
    assert check_model_file(ok) == ok
    big = _zip_raw(tmp_path / "assets.keras", [marker, ("saved_model/assets/blob", raw, crc, 128 << 20)])
    with pytest.raises(ModelError, match=r"assets\.keras: member saved_model/assets/blob would unpack to 128\.0 MiB "
                                         r"\(limit 64\.0 MiB\)"):
        check_model_file(big)
