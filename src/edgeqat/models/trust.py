"""Refuse model files that would run their own code when loaded.

A Keras model file can carry Python code: a ``Lambda`` layer stores its function's
bytecode, and a class or function named by module is imported. tf-keras honours
``safe_mode`` for ``.keras`` files only; its legacy HDF5 loader (and SavedModel's
``keras_metadata.pb``) rebuilds a Lambda and runs it. So the architecture is read as
plain JSON *before* Keras sees the file -- from the ``model_config`` attribute of an
``.h5``, ``config.json`` of a ``.keras`` zip, or the node metadata of a SavedModel -- and
every ``class_name`` in it, however deeply nested, must be one Keras (or, for the
pipeline's quantize-wrapped models, tfmot) ships. ``train.trust_model_code: true`` skips
the check for users who wrote the model themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from edgeqat.errors import ModelError
from edgeqat.models.keras_zip import check_depth, read_json

# Layers whose config holds code: Keras 2's Lambda (marshalled bytecode) and Keras 3's
# serialized lambdas. TFOpLambda / SlicingOpLambda name a TF op instead (checked below).
CODE_CLASSES = {"Lambda", "__lambda__"}
# Modules Keras may import a named class or function from while deserializing.
SAFE_MODULE_PREFIXES = ("keras", "tf_keras", "tensorflow_model_optimization")
# TFOpLambda rebuilds a call to a TF API function by name (`x + 1`, `tf.nn.relu(x)` in a
# functional model). Math-like namespaces only: tf.io.write_file, tf.py_function or
# tf.print would act on the host when the model is rebuilt.
TF_OP_NAMESPACES = {"math", "nn", "__operators__", "image", "linalg", "signal", "bitwise", "dtypes", "random"}
TF_OP_REFUSED = {"py_function", "numpy_function", "print", "load_op_library", "load_library", "py_func", "function"}
# serialization_lib's own markers for tuples, arrays, bytes, ...: plain data.
_DATA_MARKERS = {"__tuple__", "__numpy__", "__bytes__", "__typespec__", "__tensor__", "__ellipsis__", "__slice__",
                 "__passive_serialization__", "function",
                 # a SavedModel's keras_metadata.pb records shapes and specs this way
                 "TensorShape", "TensorSpec", "TypeSpec", "DType"}


def _read_config(path: Path) -> list[Any]:
    """The model's architecture as JSON-like objects (several for a SavedModel); [] if none."""
    try:
        if path.is_dir():
            meta = path / "keras_metadata.pb"
            if not meta.is_file():
                return []  # a plain TF SavedModel: graphs of TF ops, no Keras layers to rebuild
            import importlib

            from edgeqat.tf_compat import keras

            pb = importlib.import_module(f"{keras.__name__}.protobuf.saved_metadata_pb2").SavedMetadata()
            pb.ParseFromString(meta.read_bytes())
            return [json.loads(n.metadata) for n in pb.nodes if n.metadata]
        if path.suffix == ".keras":
            return [read_json(path, "config.json")]  # member sizes and nesting bounded
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        if raw is None:
            raise ModelError(f"{path}: HDF5 file holds no model_config (weights only?); save the whole model")
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        check_depth(config, f"{path}: model_config")
        return [config]
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - h5py, zipfile, protobuf and json each raise their own
        raise ModelError(f"{path}: cannot read the model architecture: {err}") from None


def _objects(node: Any, where: str = "") -> Iterator[tuple[str, dict]]:
    """Every dict naming a class, with its path of layer names (``model/block/layer``)."""
    if isinstance(node, dict):
        here = where
        if isinstance(node.get("class_name"), str):
            cfg = node.get("config")
            name = (cfg.get("name") if isinstance(cfg, dict) else None) or node.get("name")
            here = f"{where}/{name}" if isinstance(name, str) and name else where
            yield here, node
        for v in node.values():
            yield from _objects(v, here)
    elif isinstance(node, list):
        for v in node:
            yield from _objects(v, where)


def known_classes(quantized: bool) -> set[str]:
    """Class names Keras itself (and tfmot, for quantize-wrapped models) deserializes."""
    from edgeqat.tf_compat import keras

    import importlib

    layers = importlib.import_module(f"{keras.__name__}.src.layers.serialization")
    layers.populate_deserializable_objects()  # every built-in layer, TFOpLambda and friends included
    names = {"Functional", "Sequential", "Model", *layers.LOCAL.ALL_OBJECTS}
    for mod in (keras.layers, keras.initializers, keras.regularizers, keras.constraints, keras.activations,
                keras.losses, keras.metrics, keras.optimizers, keras.optimizers.schedules, keras.mixed_precision):
        names |= {n for n in dir(mod) if not n.startswith("_")}
    if quantized:
        from edgeqat.tf_compat import tfmot

        for objects in tfmot.quantization.keras.quantize_scope().custom_objects:
            names |= set(objects)
    return names - CODE_CLASSES


def check_no_code(path: str | Path, *, quantized: bool = False) -> None:
    """ModelError naming the file and the first layer that would run code or is unknown."""
    path = Path(path)
    found = [(w, o) for cfg in _read_config(path) for w, o in _objects(cfg)]
    hint = "set train.trust_model_code: true only if you trust whoever wrote this file"
    for where, obj in found:  # cheap checks first: no TensorFlow import for the common refusal
        cls, module = obj["class_name"], obj.get("module")
        if cls in CODE_CLASSES:
            raise ModelError(f"{path}: layer {where.lstrip('/') or '?'} is a {cls} (it stores Python code that "
                             f"would run on load); refused: {hint}")
        if isinstance(module, str) and module and not module.startswith(SAFE_MODULE_PREFIXES):
            raise ModelError(f"{path}: {cls!r} at {where.lstrip('/') or '?'} comes from module {module!r}, which "
                             f"loading would import; refused: {hint}")
        if cls in ("TFOpLambda", "SlicingOpLambda"):
            fn = (obj.get("config") or {}).get("function") if isinstance(obj.get("config"), dict) else None
            head = fn.split(".")[0] if isinstance(fn, str) else None
            if not isinstance(fn, str) or fn in TF_OP_REFUSED or ("." in fn and head not in TF_OP_NAMESPACES):
                raise ModelError(f"{path}: layer {where.lstrip('/') or '?'} calls tf.{fn} when rebuilt (only math-like TF "
                                 f"ops are loaded); refused: {hint}")
        reg = obj.get("registered_name")
        if isinstance(reg, str) and ">" in reg:  # package>Name: a user-registered custom object
            raise ModelError(f"{path}: custom object {reg!r} at {where.lstrip('/') or '?'} refused: {hint}")
    unchecked = [(w, o) for w, o in found if o["class_name"] not in _DATA_MARKERS]
    if unchecked:
        known = known_classes(quantized)
        for where, obj in unchecked:
            # tf-keras registers its own optimizers as "Custom>Adam" (a compiled SavedModel records them)
            name = obj["class_name"].removeprefix("Custom>")
            if name not in known:
                raise ModelError(f"{path}: unknown class {obj['class_name']!r} at {where.lstrip('/') or '?'} "
                                 f"(not a Keras layer; custom code is refused): {hint}")
