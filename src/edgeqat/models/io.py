"""Saving and loading Keras models (FP32 and quantize-wrapped), atomically."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgeqat.errors import ModelError
from edgeqat.io import atomic_path


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


# The trust decision of the run (train.trust_model_code), set once by the CLI from the params
# file; a step may also pass it explicitly (the train step does, for train.from_model).
_trust_model_code = False


def set_trust_model_code(enabled: bool) -> None:
    global _trust_model_code
    _trust_model_code = bool(enabled)


def load_model(path: str | Path, *, quantized: bool = False, trust_code: bool | None = None) -> Any:
    """Load a .keras/.h5 file or a SavedModel folder; ``quantized`` opens tfmot's scope. A SavedModel
    export without Keras layers comes back as an :class:`~edgeqat.models.exported.ExportedModel`.

    Every model edgeqat reads comes through here. Unless the run trusts model code
    (``train.trust_model_code``), the architecture is checked first and a file that would
    run code on load (a Lambda layer, an unknown class) is refused (:mod:`edgeqat.models.trust`).
    """
    from edgeqat.models.absent import refuse_absent
    from edgeqat.models.exported import ExportedModel, is_export, is_packed
    from edgeqat.models.trust import check_no_code

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    refuse_absent(path)  # a stage skipped this model: its reason, not a Keras error
    if not quantized and (is_export(path) or is_packed(path)):
        return ExportedModel(path)  # a graph without Keras layers (edgeqat.models.exported)
    if not path.is_dir() and path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"{path}: not a Keras model file (expected .keras, .h5 or a SavedModel folder)")
    trusted = _trust_model_code if trust_code is None else trust_code
    if not trusted:
        check_no_code(path, quantized=quantized)
    from edgeqat.tf_compat import keras, tfmot

    # safe_mode is honoured by the .keras loader only; the check above covers the others.
    kwargs = {"compile": False, **({"safe_mode": not trusted} if path.suffix == ".keras" else {})}
    try:
        if quantized:
            with tfmot.quantization.keras.quantize_scope():
                return keras.models.load_model(path, **kwargs)
        return keras.models.load_model(path, **kwargs)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for unreadable files
        raise ModelError(f"{path}: cannot load Keras model: {err}") from None


def check_model_fits_data(model: Any, meta: dict, origin: str) -> None:
    """The model takes the prepared images and scores their classes (``meta``: prepared/meta.json)."""
    want_in, k = tuple(meta["image_shape"]), len(meta["class_names"])
    got_in = tuple(model.input_shape[1:])
    if got_in != want_in:
        raise ModelError(f"{origin}: model input shape {got_in} does not match the prepared images {want_in} (prepare.image_size / prepare.channels)")
    got_out = model.output_shape[-1]
    if got_out != k:
        raise ModelError(f"{origin}: model has {got_out} outputs but the data has {k} classes")
