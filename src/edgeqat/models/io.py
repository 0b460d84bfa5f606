"""Saving and loading Keras models (FP32 and quantize-wrapped), atomically."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgeqat.errors import ModelError
from edgeqat.io import atomic_path, log


def save_model(model: Any, dest: str | Path) -> Path:
    """Save by the destination's suffix, under a temp name then renamed.

    Use ``.keras`` for FP32 models and ``.h5`` for quantize-wrapped ones: tf-keras 2.21
    cannot reload tfmot's QuantizeLayer from a ``.keras`` file (it expects 5 variables,
    finds 3), while HDF5 round-trips exactly.
    """
    dest = Path(dest)
    if dest.suffix not in (".keras", ".h5"):
        raise ModelError(f"{dest}: model files must end in .keras or .h5")
    with atomic_path(dest, suffix=dest.suffix) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy")
        # The optimizer state is not needed downstream; only HDF5 accepts the flag.
        model.save(tmp, **({"include_optimizer": False} if dest.suffix == ".h5" else {}))
        if dest.suffix == ".keras":
            _drop_save_time(tmp)
    return dest


def _drop_save_time(path: Path) -> None:
    """Make a .keras file a function of the model alone: Keras records the save time in
    metadata.json and in the zip entries, so re-training with the same inputs would otherwise
    change the file's hash and make DVC re-run every stage after train."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as zin:
        entries = [(info, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w") as zout:
        for info, data in entries:
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            zout.writestr(fixed, data)


def check_model_file(path: str | Path) -> Path:
    """What can be checked of a model file without TensorFlow, in milliseconds: it exists, it is
    not a marker for a model a stage skipped (:mod:`edgeqat.models.absent`), its suffix, and a
    zip's member sizes (before anything in it is read, by us or by Keras). A step calls it
    before its slow start so a bad file is refused at once."""
    from edgeqat.models.absent import refuse_absent
    from edgeqat.models.exported import is_export, is_packed
    from edgeqat.models.keras_zip import check_members

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    refuse_absent(path)  # a stage skipped this model: its reason, not a Keras error
    if is_export(path):
        return path
    packed = is_packed(path)  # a packed SavedModel keeps the name it was given (models/fp32.keras)
    if not packed and not path.is_dir() and path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"{path}: not a Keras model file (expected .keras, .h5 or a SavedModel folder)")
    if packed or (path.suffix == ".keras" and not path.is_dir()):
        check_members(path)
    return path


def load_model(path: str | Path, *, quantized: bool = False, trust_code: bool = False,
               samples: Any = None) -> Any:
    """Load a .keras/.h5 file or a SavedModel folder; ``quantized`` opens tfmot's scope. A SavedModel
    export without Keras layers comes back as an :class:`~edgeqat.models.exported.ExportedModel`.

    Every model edgeqat reads comes through here, after :func:`check_model_file`. A file
    written by Keras 3 is translated to tf-keras and checked against Keras 3's own outputs,
    on ``samples`` when given (:mod:`edgeqat.models.keras3`); it may hold no code at all.
    Otherwise, unless ``trust_code`` (the run's ``train.trust_model_code``, which the stage
    runner hands to every step that loads a model), the architecture is checked first and a
    file that would run code on load (a Lambda layer, an unknown class) is refused
    (:mod:`edgeqat.models.trust`).
    """
    from edgeqat.models.exported import ExportedModel, is_export, is_packed
    from edgeqat.models.keras3 import is_keras3
    from edgeqat.models.trust import check_no_code

    path = check_model_file(path)
    if not quantized and (is_export(path) or is_packed(path)):
        return ExportedModel(path)  # a graph without Keras layers (edgeqat.models.exported)
    if is_keras3(path):
        from edgeqat.models.keras3 import load_keras3

        return _reserve_names(load_keras3(path, samples=samples, log=log))
    trusted = bool(trust_code)
    if not trusted:
        check_no_code(path, quantized=quantized)
    from edgeqat.tf_compat import keras, tfmot

    # safe_mode is honoured by the .keras loader only; the check above covers the others.
    kwargs = {"compile": False, **({"safe_mode": not trusted} if path.suffix == ".keras" else {})}
    try:
        if quantized:
            with tfmot.quantization.keras.quantize_scope():
                return _reserve_names(keras.models.load_model(path, **kwargs))
        return _reserve_names(keras.models.load_model(path, **kwargs))
    except Exception as err:  # noqa: BLE001 - Keras raises many types for unreadable files
        raise ModelError(f"{path}: cannot load Keras model: {err}") from None


def _reserve_names(model: Any) -> Any:
    """Take the loaded model's layer names in this process's name counter, as they were in the
    session that built it. tfmot names the layers it creates from that counter (it splits a
    SeparableConv2D into a new DepthwiseConv2D and Conv2D): in a fresh process a new Conv2D
    would be called ``conv2d`` again, and tfmot's rebuild would wire the user's ``conv2d``,
    a default name, to the wrong input."""
    import importlib
    import re

    from edgeqat.tf_compat import keras

    uids = importlib.import_module(f"{keras.__name__}.src.backend").get_default_graph_uid_map()
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "layers", []))
        base, number = re.fullmatch(r"(.+?)(?:_(\d+))?", layer.name).groups()
        uids[("", base)] = max(uids[("", base)], int(number or 0) + 1)
    return model


def check_model_fits_data(model: Any, meta: dict, origin: str) -> None:
    """The model takes the prepared images and scores their classes (``meta``: prepared/meta.json)."""
    want_in, k = tuple(meta["image_shape"]), len(meta["class_names"])
    got_in = tuple(model.input_shape[1:])
    if got_in != want_in:
        raise ModelError(f"{origin}: model input shape {got_in} does not match the prepared images {want_in} (prepare.image_size / prepare.channels)")
    got_out = model.output_shape[-1]
    if got_out != k:
        raise ModelError(f"{origin}: model has {got_out} outputs but the data has {k} classes")
