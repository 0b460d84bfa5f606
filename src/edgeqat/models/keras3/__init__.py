"""Keras 3 model files (``.keras``, ``.h5``) as tf-keras models, without running their code.

Since TensorFlow 2.16 ``tf.keras`` is Keras 3, so that is what users save today; tfmot (QAT,
pruning, clustering) needs Keras 2, which TensorFlow ships as ``tf_keras``. A Keras 3 file is
brought across in four steps:

1. its config is read as JSON (``config.json`` of the zip, or the ``.h5``'s ``model_config``),
   sizes and nesting bounded (:mod:`edgeqat.models.keras_zip`);
2. the config is translated by :mod:`.translate` through the one table of differences
   (:mod:`.table`); a layer it cannot translate, or any code (``Lambda``, a custom class), is
   refused with one line naming the layer and why;
3. tf-keras builds the translated model and gets the weights, read with h5py from the file's
   own layout (:mod:`.weights`);
4. the translated model's outputs are compared with Keras 3's own on sample inputs, Keras 3
   running in a child process (the one place it runs); a difference above the tolerance is
   refused, so a translation is never silently wrong.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeqat.errors import ModelError
from edgeqat.models.keras_zip import check_depth, check_members, read_json

TOLERANCE = 1e-4  # max |difference| allowed, relative to the outputs' scale when that exceeds 1
SAMPLES = 32


def keras_version(path: Path) -> str | None:
    """The Keras version that wrote a .keras/.h5 file, as the file records it (None if it does not)."""
    if path.suffix == ".keras":
        if "metadata.json" not in {i.filename for i in check_members(path)}:
            return None
        meta = read_json(path, "metadata.json")
        version = meta.get("keras_version") if isinstance(meta, dict) else None
    else:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version")
        except OSError as err:
            raise ModelError(f"{path}: not a readable HDF5 model file: {err}") from None
    if isinstance(version, bytes):
        version = version.decode()
    return version if isinstance(version, str) else None


def is_keras3(path: Path) -> bool:
    if path.is_dir() or path.suffix not in (".keras", ".h5", ".hdf5"):
        return False
    version = keras_version(path)
    return bool(version) and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3


def read_config(path: Path) -> dict:
    if path.suffix == ".keras":
        return read_json(path, "config.json")
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        raise ModelError(f"{path}: HDF5 file holds no model_config (weights only?); save the whole model")
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, RecursionError) as err:
        raise ModelError(f"{path}: cannot read the model config: {err}") from None
    check_depth(config, f"{path}: model_config")
    return config


def translate_file(path: Path) -> tuple[Any, set[str]]:
    """The tf-keras model of a Keras 3 file, with its weights, and the table entries used
    (no comparison with Keras 3 yet: :func:`load_keras3` does that)."""
    from edgeqat.models.keras3.translate import translate
    from edgeqat.models.keras3.weights import read_h5_weights, read_keras_weights, set_weights

    config = read_config(path)
    translation = translate(config, str(path))
    model = build(translation.config, str(path))
    weights = (read_keras_weights if path.suffix == ".keras" else read_h5_weights)(path, config)
    set_weights(model, weights, str(path))
    return model, translation.used


def build(config: dict, origin: str) -> Any:
    """tf-keras builds the translated config; a layer it refuses is named with tf-keras' reason."""
    from edgeqat.tf_compat import keras

    try:
        return keras.models.model_from_config(config)
    except Exception as err:  # noqa: BLE001 - tf-keras raises TypeError/ValueError for options it does not take
        graph_error = err
    for where, entry in _leaf_layers(config, ""):  # which layer was it?
        try:
            keras.layers.deserialize({"class_name": entry["class_name"], "config": entry["config"]})
        except Exception as err:  # noqa: BLE001
            extra = _options_not_taken(keras, entry)
            listed = ", ".join(f"{k}={v!r}" for k, v in extra.items())
            why = (f"its options {listed} have no tf-keras equivalent" if len(extra) > 1 else
                   f"its option {listed} has no tf-keras equivalent" if extra else _first_line(err))
            raise ModelError(f"{origin}: Keras 3 layer {where} ({entry['class_name']}) cannot be built in tf-keras: "
                             f"{why}") from None
    raise ModelError(f"{origin}: the translated Keras 3 model does not build in tf-keras: {_first_line(graph_error)}")


# What every tf-keras layer takes besides its own arguments (base Layer keywords).
_BASE_OPTIONS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
                 "batch_size", "weights", "activity_regularizer", "autocast", "implementation"}


def _options_not_taken(keras: Any, entry: dict) -> dict:
    import inspect

    cls = getattr(keras.layers, entry["class_name"], None)
    if cls is None:
        return {}
    taken = set(_BASE_OPTIONS)
    for klass in cls.__mro__:  # a layer passes **kwargs on to its bases
        init = klass.__dict__.get("__init__")
        if init is not None:
            taken |= set(inspect.signature(init).parameters)
    return {k: v for k, v in entry["config"].items() if k not in taken}


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _leaf_layers(model_cfg: dict, outer: str) -> Any:
    for entry in model_cfg["config"]["layers"]:
        where = f"{outer}/{entry['config'].get('name', '?')}".lstrip("/")
        if entry["class_name"] in ("Functional", "Sequential"):
            yield from _leaf_layers(entry, where)
        else:
            yield where, entry


def sample_inputs(model: Any, n: int = SAMPLES) -> Any:
    """Seeded inputs in [0, 1) shaped for the model, when the caller has no real images."""
    import numpy as np

    shape = tuple(model.input_shape[1:])
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


def max_difference(model: Any, path: Path, inputs: Any) -> tuple[float, float, str]:
    """(max |tf-keras - Keras 3|, max |Keras 3|, Keras 3's version) of the outputs on ``inputs``."""
    import numpy as np

    from edgeqat.tf_compat import keras3_outputs

    with tempfile.TemporaryDirectory(prefix="edgeqat-keras3-") as tmp:
        x, y = Path(tmp) / "inputs.npy", Path(tmp) / "outputs.npy"
        np.save(x, np.asarray(inputs, dtype=np.float32))
        code, said = keras3_outputs(path.resolve(), x, y)
        if code != 0:
            raise ModelError(f"{path}: Keras 3 itself could not load and run this file, so the translation cannot be "
                             f"checked: {said}")
        reference = np.load(y)
    ours = np.asarray(model(np.asarray(inputs, dtype=np.float32), training=False), dtype=np.float32)
    if ours.shape != reference.shape:
        raise ModelError(f"{path}: the translated model's outputs are shaped {ours.shape}, Keras 3's {reference.shape}")
    return float(np.abs(ours - reference).max()), float(np.abs(reference).max()), said


def load_keras3(path: Path, samples: Any = None, log: Any = None) -> Any:
    """The tf-keras model computing what the Keras 3 file computes (checked), or ModelError."""
    t0 = time.monotonic()
    model, _ = translate_file(path)
    fits = samples is not None and tuple(samples.shape[1:]) == tuple(model.input_shape[1:])
    inputs = samples[:SAMPLES] if fits else sample_inputs(model)  # a misfit is reported by the caller, clearly
    diff, scale, version = max_difference(model, path, inputs)
    allowed = TOLERANCE * max(1.0, scale)
    if not diff <= allowed:  # also catches NaN
        raise ModelError(f"{path}: the tf-keras translation of this Keras 3 model computes different outputs (max "
                         f"difference {diff:.3g} on {len(inputs)} samples, allowed {allowed:.3g}); please report it")
    if log is not None:
        log(f"{path}: Keras {version} model translated to tf-keras; same outputs on {len(inputs)} samples "
            f"(max difference {diff:.2g}) in {time.monotonic() - t0:.1f} s")
    return model
