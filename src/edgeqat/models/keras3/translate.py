"""Keras 3 model config -> tf-keras model config, as plain JSON: nothing in the file runs.

The walker rewrites what :mod:`edgeqat.models.keras3.table` says differs and refuses,
naming the layer (as a path ``model/backbone/layer``) and the reason, whatever the table
does not know. It records which table entries it used, so a test can check that the
table is walked in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeqat.errors import ModelError
from edgeqat.models.keras3 import table


@dataclass
class Translation:
    config: dict  # tf-keras' {"class_name": "Functional"|"Sequential", "config": {...}}
    used: set[str] = field(default_factory=set)  # table entries, as table.entries() names them


class _Walk:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.used: set[str] = set()

    def refuse(self, where: str, why: str) -> ModelError:
        return ModelError(f"{self.origin}: Keras 3 layer {where or '?'} cannot be translated to tf-keras: {why}")

    # --- what an object is -------------------------------------------------------------

    def class_of(self, obj: dict, where: str, kind: str) -> str:
        """The object's class name, once it is known to be a Keras 3 built-in of ``kind``
        (``layer``, ``model``, ``object``), not the user's own code."""
        cls, module, reg = obj.get("class_name"), obj.get("module"), obj.get("registered_name")
        if not isinstance(cls, str):
            raise self.refuse(where, "its config names no class")
        if cls in table.REFUSED:
            raise self.refuse(where, f"it is a {cls}: {table.REFUSED[cls]}")
        custom_module = isinstance(module, str) and module and module != "keras" and not module.startswith("keras.")
        if ">" in cls:  # Keras 3's .h5 writer puts the registered name in class_name
            reg = cls
        custom_name = isinstance(reg, str) and ">" in reg
        if custom_module or custom_name:
            source = f"module {module!r}" if custom_module else f"registered name {reg!r}"
            raise self.refuse(where, f"{cls!r} is custom code from {source}, which edgeqat never runs on load and "
                                     "tf-keras cannot run for a Keras 3 model; rebuild it from built-in layers")
        if isinstance(module, str) and module and not _under(module, table.MODULES[kind]):
            if module.startswith("keras.src.ops"):
                raise self.refuse(where, f"it is a keras.ops call ({cls}), which tf-keras has no layer for; use the "
                                         "matching layer (keras.layers.Multiply, Add, ...) in the model")
            raise self.refuse(where, f"{cls!r} from module {module!r} is not a Keras {kind} edgeqat translates")
        return cls

    # --- models and layers -------------------------------------------------------------

    def model(self, obj: dict, where: str) -> dict:
        cls = self.class_of(obj, where, "model")
        if cls not in table.MODELS:
            raise self.refuse(where, f"{cls!r} is not a Functional or Sequential model")
        self.used.add(f"model:{cls}")
        cfg = obj.get("config")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
            raise self.refuse(where, "its config holds no layer list")
        name = cfg.get("name", "model")
        functional = cls == "Functional"
        # tf-keras numbers a nested model's calls from 1 (its node 0 links its own inputs to
        # its outputs and is left out of configs); Keras 3 numbers them from 0
        shift = {e.get("name") for e in cfg["layers"] if isinstance(e, dict) and _has_own_node(e)}
        layers = [self.layer_entry(entry, where, functional, shift) for entry in cfg["layers"]]
        out: dict[str, Any] = {"name": name, "layers": layers}
        if functional:
            out["input_layers"] = self.endpoints(cfg.get("input_layers"), where, shift)
            out["output_layers"] = self.endpoints(cfg.get("output_layers"), where, shift)
        elif isinstance(cfg.get("build_input_shape"), list):
            out["build_input_shape"] = cfg["build_input_shape"]
        # a frozen model's "trainable": false is on each of its layers too, where tf-keras reads it
        return {"class_name": cls, "config": out}

    def layer_entry(self, entry: Any, outer: str, functional: bool, shift: set) -> dict:
        if not isinstance(entry, dict):
            raise self.refuse(outer, "its layer list holds something other than layers")
        cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        where = f"{outer}/{cfg.get('name') or entry.get('name') or '?'}".lstrip("/")
        kind = "model" if entry.get("class_name") in table.MODELS else "layer"
        cls = self.class_of(entry, where, kind)
        if cls in table.MODELS:
            out = self.model(entry, where)
        else:
            out = {"class_name": cls, "config": self.layer_config(cls, cfg, where)}
        if functional:
            out["name"] = entry.get("name", cfg.get("name"))
            out["inbound_nodes"] = self.nodes(entry.get("inbound_nodes", []), where, shift)
        return out

    def layer_config(self, cls: str, cfg: dict, where: str) -> dict:
        rule = table.LAYERS.get(cls)
        if rule is None:
            raise self.refuse(where, f"edgeqat has no translation for the layer class {cls!r} (see docs/data-and-models.md "
                                     "for the layers it translates)")
        self.used.add(f"layer:{cls}")
        out = {}
        for key, value in cfg.items():
            if key in rule.drop:
                keep_value = rule.drop[key]
                if keep_value is table.ANY or value == keep_value:
                    continue
                raise self.refuse(where, f"its option {key}={value!r} has no tf-keras equivalent")
            if key == "activation":
                out[key] = self.activation(value, where)
            elif key == "dtype":
                out[key] = self.dtype(value, where)
            else:
                out[rule.rename.get(key, key)] = self.value(value, where)
        return out

    # --- options ---------------------------------------------------------------------

    def value(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.value(v, where) for v in value]
        if not isinstance(value, dict):
            return value
        if "class_name" not in value:
            return {k: self.value(v, where) for k, v in value.items()}
        cls = self.class_of(value, where, "object")
        rule = table.OBJECTS.get(cls)
        if rule is None or rule.kind == "dtype":
            raise self.refuse(where, f"an option holds a {cls!r}, which edgeqat does not translate")
        self.used.add(f"object:{cls}")
        cfg = value.get("config") or {}
        extra = {k: v for k, v in cfg.items() if k not in rule.keep and v is not None}
        if rule.strict and extra:
            raise self.refuse(where, f"its {cls} options {extra} have no tf-keras equivalent")
        return {"class_name": cls, "config": {k: self.value(v, where) for k, v in cfg.items() if k in rule.keep}}

    def dtype(self, value: Any, where: str) -> Any:
        if isinstance(value, dict):
            cls = self.class_of(value, where, "object")
            if table.OBJECTS.get(cls, table.Obj("")).kind != "dtype":
                raise self.refuse(where, f"its dtype is a {cls!r}, which edgeqat does not translate")
            self.used.add(f"object:{cls}")
            value = (value.get("config") or {}).get("name")
        if isinstance(value, str) and value not in table.FLOAT32:
            raise self.refuse(where, f"it computes in {value}; edgeqat starts from float32 models (rebuild the model "
                                     "under the float32 policy, load its weights, and save it again)")
        return value

    def activation(self, value: Any, where: str) -> str:
        if isinstance(value, dict):  # a function object: Keras 3 writes built-ins as names
            self.class_of(value, where, "object")
            value = value.get("config")
        if not isinstance(value, str):
            raise self.refuse(where, f"its activation {value!r} is not a built-in activation")
        if value in table.REFUSED_ACTIVATIONS:
            raise self.refuse(where, f"activation {value!r}: {table.REFUSED_ACTIVATIONS[value]}")
        if value not in table.ACTIVATIONS:
            raise self.refuse(where, f"activation {value!r} has no tf-keras equivalent")
        self.used.add(f"activation:{value}")
        return table.ACTIVATIONS[value]

    # --- the graph ---------------------------------------------------------------------

    def nodes(self, nodes: Any, where: str, shift: set) -> list:
        """Keras 3's ``{"args": [...], "kwargs": {...}}`` per call -> tf-keras' list of
        ``[layer, node, tensor, kwargs]`` per input tensor."""
        out = []
        for node in nodes if isinstance(nodes, list) else []:
            args, kwargs = node.get("args", []), dict(node.get("kwargs") or {})
            if len(args) != 1:
                raise self.refuse(where, f"it is called with {len(args)} positional arguments (tf-keras layers take one "
                                         "input; a keras.ops call in the model does this: use the matching layer, "
                                         "keras.layers.Multiply, Add, ...)")
            if kwargs.get("mask", 0) is None:
                del kwargs["mask"]  # what a nested model's call records; the default
            if _holds_tensor(kwargs):
                raise self.refuse(where, "it is called with a tensor as a keyword argument")
            inputs = args[0] if isinstance(args[0], list) else [args[0]]
            entries = []
            for t in inputs:
                if not (isinstance(t, dict) and t.get("class_name") == "__keras_tensor__"):
                    raise self.refuse(where, f"it is called on a constant ({t!r}), not on another layer's output")
                self.used.add("marker:__keras_tensor__")
                layer, node_index, tensor_index = t["config"]["keras_history"]
                entries.append([layer, node_index + (layer in shift), tensor_index, kwargs])
            out.append(entries)
        return out

    def endpoints(self, value: Any, where: str, shift: set) -> list:
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            value = [value]  # Keras 3 writes a single input or output unwrapped
        if not isinstance(value, list) or not all(isinstance(v, list) and len(v) == 3 for v in value):
            raise self.refuse(where, f"its inputs or outputs {value!r} are not in a form edgeqat reads")
        return [[layer, node + (layer in shift), tensor] for layer, node, tensor in value]


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def _has_own_node(entry: dict) -> bool:
    """Whether tf-keras gives this nested model a node of its own (it does when the model
    starts from an Input: every Functional, and a Sequential built with one)."""
    if entry.get("class_name") == "Functional":
        return True
    layers = (entry.get("config") or {}).get("layers") if entry.get("class_name") == "Sequential" else None
    return bool(layers) and isinstance(layers[0], dict) and layers[0].get("class_name") == "InputLayer"


def _holds_tensor(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("class_name") == "__keras_tensor__" or any(_holds_tensor(v) for v in node.values())
    if isinstance(node, list):
        return any(_holds_tensor(v) for v in node)
    return False


def translate(config: dict, origin: str) -> Translation:
    """The tf-keras config of a Keras 3 model config (``config.json`` or an ``.h5``'s ``model_config``)."""
    walk = _Walk(origin)
    if not isinstance(config, dict):
        raise ModelError(f"{origin}: the model config is not a JSON object")
    return Translation(walk.model(config, ""), walk.used)
