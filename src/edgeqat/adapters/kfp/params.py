"""params.yaml keys <-> Kubeflow Pipelines parameter names and values.

KFP parameter names must be Python identifiers, so dotted keys cannot be used as they
are. The rule, one to one and reversible:

* name: ``<section>.<key>`` <-> ``<section>__<key>`` (``qat.epochs`` <-> ``qat__epochs``);
  section and key names never contain ``__`` themselves (checked by :func:`kfp_name`).
* null: KFP has no null parameter value, so an optional key is a ``str`` parameter where
  ``""`` means null. An optional string (``train.from_model``) holds the string itself
  (``""`` is never a meaningful path, source or weights file); an optional number or list
  (``register.max_size_bytes``, ``register.required_devices``) holds its JSON text
  (``"123"``, ``'["pi4"]'``, ``"[]"``).
* lists (``convert.variants``): a KFP ``list`` parameter holding the same items.
* everything else: the same value, typed ``str``/``int``/``float``/``bool``.

KFP substitutes values placed inside a struct parameter as *strings* (``5`` arrives as
``"5.0"`` or ``"5"``, a list as its JSON text), so decoding parses a string by the key's
type before validating. Nothing here imports kfp: the components and the pipeline call it.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Iterable, Literal, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from edgeqat.config import Params, describe_validation_error, parse_params
from edgeqat.errors import ConfigError

SEP = "__"
NULL = ""

Kind = Literal["str", "int", "float", "bool", "list", "optional_str", "optional_json"]


def kfp_name(dotted: str) -> str:
    section, _, key = dotted.partition(".")
    if not key or "." in key or SEP in section or SEP in key:
        raise ConfigError(f"{dotted!r}: not a <section>.<key> name that maps to a KFP parameter")
    return f"{section}{SEP}{key}"


def dotted_name(name: str) -> str:
    section, sep, key = name.partition(SEP)
    if not sep or not key or SEP in key:
        raise ConfigError(f"{name!r}: not a KFP parameter name of the form <section>{SEP}<key>")
    return f"{section}.{key}"


def sections() -> dict[str, type[BaseModel]]:
    """Section name -> its pydantic model, in params.yaml order."""
    return {name: f.annotation for name, f in Params.model_fields.items()}  # type: ignore[misc]


def dotted_keys() -> list[str]:
    return [f"{s}.{k}" for s, model in sections().items() for k in model.model_fields]


def _kind(annotation: Any) -> Kind:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return "optional_str" if len(inner) == 1 and _kind(inner[0]) == "str" else "optional_json"
    if origin is list:
        return "list"
    if origin is Literal:
        annotation = type(args[0])
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "str"


def kinds() -> dict[str, Kind]:
    """KFP parameter name -> how its value is encoded."""
    return {
        kfp_name(f"{s}.{k}"): _kind(f.annotation)
        for s, model in sections().items()
        for k, f in model.model_fields.items()
    }


PYTHON_TYPES: dict[Kind, type] = {"str": str, "optional_str": str, "optional_json": str, "int": int, "float": float, "bool": bool, "list": list}


def encode(value: Any, kind: Kind) -> Any:
    if kind == "optional_str":
        return NULL if value is None else value
    if kind == "optional_json":
        return NULL if value is None else json.dumps(value)
    if kind == "list":
        return list(value)
    return value


def decode(value: Any, kind: Kind) -> Any:
    if isinstance(value, str) and kind in ("int", "float", "bool", "list"):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value  # left for pydantic to reject, naming the key
    if kind == "optional_str":
        return None if value in (NULL, None) else value
    if kind == "optional_json":
        if value in (NULL, None):
            return None
        try:
            return json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            return value  # left for pydantic to reject, naming the key
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def to_pipeline_values(params: Params) -> dict[str, Any]:
    """Every params.yaml key as a KFP pipeline argument (name and value encoded)."""
    dumped = params.model_dump()
    k = kinds()
    return {name: encode(dumped[s][key], k[name]) for name in k for s, key in [dotted_name(name).split(".")]}


def from_pipeline_values(values: Mapping[str, Any], source: str = "pipeline parameters") -> Params:
    """The inverse: KFP arguments (all or some; missing keys take the defaults) -> Params."""
    k = kinds()
    raw: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        if name not in k:
            raise ConfigError(f"{source}: {name!r} is not a parameter (expected one of {', '.join(k)})")
        section, key = dotted_name(name).split(".")
        raw.setdefault(section, {})[key] = decode(value, k[name])
    return parse_params(raw, source)


def nest(values: Mapping[str, Any], keys: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{"qat__epochs": v}`` -> ``{"qat": {"epochs": v}}`` for the names that are params keys.

    The pipeline uses it on its own arguments (pipeline channels) to hand each component
    its section; other names (runtime parameters) are ignored.
    """
    k = kinds()
    out: dict[str, dict[str, Any]] = {}
    for name in keys if keys is not None else values:
        if name in k:
            section, key = dotted_name(name).split(".")
            out.setdefault(section, {})[key] = values[name]
    return out


def section_config(section: str, values: Mapping[str, Any], **overrides: Any) -> Any:
    """One typed config section from a component's parameters (keys without the prefix).

    ``values`` may be the component's ``locals()``: names that are not keys of the section
    (its artifacts) are ignored; ``overrides`` replace keys (e.g. a path from an artifact).
    """
    models = sections()
    if section not in models:
        raise ConfigError(f"{section!r}: no such params section (have: {', '.join(models)})")
    model = models[section]
    k = kinds()
    merged = {**{key: v for key, v in values.items() if key in model.model_fields}, **overrides}
    decoded = {key: decode(v, k[kfp_name(f"{section}.{key}")]) for key, v in merged.items()}
    try:
        return model.model_validate(decoded)
    except ValidationError as err:
        msg = describe_validation_error(err, f"{section} component").replace("\n  ", f"\n  {section}.")
        raise ConfigError(msg) from None


def section_values(section: str, cfg: BaseModel) -> dict[str, Any]:
    """A config section as KFP can carry it (a task's dict output): nulls as ``""``."""
    k = kinds()
    return {key: encode(v, k[kfp_name(f"{section}.{key}")]) for key, v in cfg.model_dump(mode="json").items()}


def sections_values(params: Params) -> dict[str, dict[str, Any]]:
    """Every section of ``params`` as :func:`section_values` (what track hands to register)."""
    return {name: section_values(name, getattr(params, name)) for name in sections()}


def params_from_sections(configs: Mapping[str, Mapping[str, Any]], source: str = "pipeline task configs") -> Params:
    """The sections the tasks ran with (each returns :func:`section_values`) -> Params.

    Sections no task ran take their defaults; cross-section rules are checked again.
    """
    flat = {kfp_name(f"{s}.{key}"): v for s, values in configs.items() for key, v in values.items()}
    return from_pipeline_values(flat, source)
