"""Keras 3 ``model.export()`` SavedModels: a serving graph without Keras layers.

Such a folder holds TensorFlow functions and variables but no Keras config
(``keras_metadata.pb`` is what a Keras 2 SavedModel adds), so no Keras can rebuild its layers.
What needs only the graph still works: its predictions (the FP32 reference accuracy) and
TFLite conversion from the SavedModel, which gives ``fp32`` and the post-training variants.
The QAT family (QAT, mixed, pruning, clustering) rewrites layers and is not built.

The train stage's FP32 output (``models/fp32.keras``) then holds the SavedModel itself: its
files zipped in a fixed order with fixed dates (the same export gives the same bytes, so DVC
re-runs nothing) and a marker member, :data:`PACKED`, that says what it is.
:func:`edgeqat.models.io.load_model` opens either form as an :class:`ExportedModel`.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.errors import ModelError

PACKED = "edgeqat-saved-model.json"  # the marker member of a packed SavedModel
WHY = ("it is a SavedModel export without Keras layers (Keras 3 model.export()); QAT, pruning and clustering "
       "rewrite the layers, so they need the model as a .keras file (model.save('model.keras'))")


def is_export(path: str | Path) -> bool:
    """A SavedModel folder that Keras cannot rebuild as layers (no keras_metadata.pb)."""
    p = Path(path)
    return p.is_dir() and (p / "saved_model.pb").is_file() and not (p / "keras_metadata.pb").is_file()


def is_packed(path: str | Path) -> bool:
    p = Path(path)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as zf:
        return PACKED in zf.namelist()


def pack(folder: str | Path, dest: str | Path, origin: str) -> None:
    """The SavedModel ``folder`` as one zip at ``dest`` (members sorted, dates fixed)."""
    folder = Path(folder)
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(PACKED, date_time=(1980, 1, 1, 0, 0, 0))
        zf.writestr(info, json.dumps({"format": "saved_model", "origin": Path(origin).name}, sort_keys=True))
        for f in files:
            info = zipfile.ZipInfo(f"saved_model/{f.relative_to(folder).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, f.read_bytes())


def _unpack(path: Path, into: Path) -> Path:
    root = (into / "saved_model").resolve()
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name == PACKED or name.endswith("/"):
                continue
            target = (into / name).resolve()
            if not name.startswith("saved_model/") or root not in target.parents:
                raise ModelError(f"{path}: member {name!r} lies outside the packed SavedModel")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
    return root


class ExportedModel:
    """A SavedModel's serving function with the few attributes the stages read of a Keras model:
    ``name``, ``input_shape``, ``output_shape``, ``model(x, training=False)``, ``count_params()``,
    ``save(path)`` (packs it) and the folder TFLite converts from."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self._tmp = None
        if path.is_dir():
            self.folder = path
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgeqat-savedmodel-")  # lives as long as the model
            self.folder = _unpack(path, Path(self._tmp.name))
        self.origin = str(path)
        from edgeqat.tf_compat import tf

        try:
            self._obj = tf.saved_model.load(str(self.folder))
            self._fn = self._obj.signatures["serving_default"]
        except Exception as err:  # noqa: BLE001 - TF raises many types for unreadable SavedModels
            raise ModelError(f"{path}: cannot load the SavedModel's serving_default signature: {err}") from None
        args, kwargs = self._fn.structured_input_signature
        specs = list(args) + list(kwargs.values())
        outs = list(self._fn.structured_outputs.values())
        if len(specs) != 1 or len(outs) != 1:
            raise ModelError(f"{path}: the SavedModel's serving_default takes {len(specs)} input(s) and gives "
                             f"{len(outs)} output(s); edgeqat handles image classifiers with one of each")
        self._input_name = next(iter(kwargs), None)
        self.input_shape = tuple(specs[0].shape.as_list())
        self.output_shape = tuple(outs[0].shape.as_list())
        if len(self.input_shape) != 4:
            raise ModelError(f"{path}: the SavedModel takes inputs shaped {self.input_shape}; edgeqat needs images "
                             "(batch, H, W, C)")
        self.name = Path(self.origin).stem or "saved_model"

    def __call__(self, x: Any, training: bool = False) -> Any:
        from edgeqat.tf_compat import tf

        x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        out = self._fn(**{self._input_name: x}) if self._input_name else self._fn(x)
        return next(iter(out.values()))

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self._obj.variables))

    def save(self, dest: str | Path, **_: Any) -> None:
        pack(self.folder, dest, self.origin)

    def tflite_converter(self) -> Any:
        from edgeqat.tf_compat import tf

        return tf.lite.TFLiteConverter.from_saved_model(str(self.folder))


def tflite_converter(model: Any) -> Any:
    """The TFLite converter for a Keras model or an :class:`ExportedModel`."""
    if isinstance(model, ExportedModel):
        return model.tflite_converter()
    from edgeqat.tf_compat import tf

    return tf.lite.TFLiteConverter.from_keras_model(model)
