"""A Keras 3 file's weights, per layer, read with h5py (no Keras involved).

Both readers return ``{layer path: [arrays]}``, the path being the layer names from the
outer model down (``("dense",)``, ``("mobilenetv2_0.35_96", "Conv1")``), and the arrays in
the layer's own variable order, which tf-keras shares (see the table's notes).

- ``.keras`` (``model.weights.h5`` in the zip): Keras 3 stores a layer's variables under
  ``layers/<key>/vars/0, 1, ...`` where ``<key>`` is *not* the layer's name but its class
  name in snake case, numbered in the model's layer order (``conv2d``, ``conv2d_1``, ...),
  and a nested model's under ``layers/<key>/layers/...``. The keys are recomputed here
  from the config the same way, and checked against the ``name`` Keras 3.x records
  beside each group where it does.
- ``.h5`` (Keras 3's legacy HDF5 writer): ``model_weights/<layer name>`` lists its
  variables in ``weight_names``; a nested model lists all of its layers' variables in one
  group, as ``<sublayer>/<variable>`` paths, which are grouped here by sublayer name.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from edgeqat.errors import ModelError
from edgeqat.models.keras3 import table

Weights = dict[tuple[str, ...], list[Any]]


def _snake(name: str) -> str:
    """Keras 3's naming.to_snake_case, which keys the weights store."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _layers(model_cfg: dict) -> list[dict]:
    """The layers Keras 3 saves state for, in its order (a Sequential's InputLayer is not one)."""
    layers = model_cfg["config"]["layers"]
    if model_cfg["class_name"] == "Sequential" and layers and layers[0].get("class_name") == "InputLayer":
        layers = layers[1:]
    return layers


def _name(layer_cfg: dict) -> str:
    return (layer_cfg.get("config") or {}).get("name") or layer_cfg.get("name")


def store_paths(model_cfg: dict, prefix: str = "", names: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(layer path, group of its variables in model.weights.h5) for every non-model layer."""
    used: dict[str, int] = {}
    for layer in _layers(model_cfg):
        base = _snake(layer["class_name"])
        key = base if base not in used else f"{base}_{used[base] + 1}"
        used[base] = used.get(base, -1) + 1
        path = f"{prefix}layers/{key}"
        if layer["class_name"] in table.MODELS:
            yield from store_paths(layer, f"{path}/", (*names, _name(layer)))
        else:
            yield (*names, _name(layer)), f"{path}/vars"


def read_keras_weights(path: Path, config: dict) -> Weights:
    import h5py

    out: Weights = {}
    try:
        # unpacked to a temporary file first: h5py seeks back and forth, which Python's zip
        # reader serves by unpacking from the start again (its size was capped by the caller)
        with zipfile.ZipFile(path) as zf, zf.open("model.weights.h5") as fh, \
                tempfile.TemporaryFile(prefix="edgeqat-weights-") as tmp:
            shutil.copyfileobj(fh, tmp, 1 << 20)
            tmp.seek(0)
            with h5py.File(tmp, "r") as f:
                _read_vars(path, config, f, out)
    except KeyError as err:
        raise ModelError(f"{path}: model.weights.h5 is incomplete: {err}") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise ModelError(f"{path}: cannot read model.weights.h5: {err}") from None
    return out


def _read_vars(path: Path, config: dict, f: Any, out: Weights) -> None:
    for names, group in store_paths(config):
        g = f.get(group)
        if g is None:
            raise ModelError(f"{path}: model.weights.h5 has no {group} for layer {'/'.join(names)} (the weights do "
                             "not match config.json)")
        recorded = g.attrs.get("name")
        if isinstance(recorded, str) and recorded != names[-1]:
            raise ModelError(f"{path}: model.weights.h5 holds layer {recorded!r} at {group}, where config.json "
                             f"has {names[-1]!r}")
        out[names] = [g[str(i)][()] for i in range(len(g))]


def _leaves(model_cfg: dict, names: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for layer in model_cfg["config"]["layers"]:
        here = (*names, _name(layer))
        if layer["class_name"] in table.MODELS:
            yield from _leaves(layer, here)
        else:
            yield here


def read_h5_weights(path: Path, config: dict) -> Weights:
    import h5py

    out: Weights = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for layer in config["config"]["layers"]:
                name = _name(layer)
                if name not in root:
                    continue  # no variables (the writer skips nothing, but an input layer may be absent)
                g = root[name]
                wnames = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
                if layer["class_name"] not in table.MODELS:
                    out[(name,)] = [g[w][()] for w in wnames]
                    continue
                # a nested model: one group for all its layers, "<sublayer>/<variable>" each
                by_leaf = {p[-1]: p for p in _leaves(layer, (name,))}
                for w in wnames:
                    parts = w.split("/")
                    leaf = parts[-2] if len(parts) >= 2 else None
                    if leaf not in by_leaf:
                        raise ModelError(f"{path}: weight {w!r} of nested model {name!r} names no layer of it")
                    out.setdefault(by_leaf[leaf], []).append(g[w][()])
    except KeyError as err:
        raise ModelError(f"{path}: the HDF5 weights are incomplete: {err}") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read the HDF5 weights: {err}") from None
    return out


def set_weights(model: Any, weights: Weights, origin: str) -> None:
    """Give every layer of the tf-keras ``model`` its Keras 3 arrays; ModelError naming the
    layer when counts or shapes differ, or when a stored layer has no place."""
    placed: set[tuple[str, ...]] = set()

    def walk(m: Any, names: tuple[str, ...]) -> None:
        for layer in m.layers:
            here = (*names, layer.name)
            if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested model
                walk(layer, here)
                continue
            arrays = weights.get(here, [])
            if len(arrays) != len(layer.weights):
                raise ModelError(f"{origin}: layer {'/'.join(here)} has {len(arrays)} stored weights, its tf-keras "
                                 f"translation {len(layer.weights)} ({[w.name.split('/')[-1] for w in layer.weights]})")
            if arrays:
                try:
                    layer.set_weights(arrays)
                except ValueError as err:
                    raise ModelError(f"{origin}: layer {'/'.join(here)}: the stored weights do not fit its tf-keras "
                                     f"translation: {err}") from None
            placed.add(here)

    walk(model, ())
    left = [p for p, arrays in weights.items() if arrays and p not in placed]
    if left:
        raise ModelError(f"{origin}: stored weights of {'/'.join(left[0])} belong to no layer of the translated model")
