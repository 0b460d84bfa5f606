"""A run's params, loaded one way by every adapter: the CLI (and DVC through it), the KFP
components and CI.

Loading is: read (a params file, or the mapping a pipeline was started with), validate every
key and the rules across sections (errors name the dotted key), and check that every device
named is a known profile, before anything runs (the device check lives in ``devices/``, which
config.py may not import). The trust decision (``train.trust_model_code``) is a field of the
result: the stage runner hands it to each step that loads a model (``Stage.keys``), so nothing
is set for the whole process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeqat.config import Params, load_params, parse_params


def checked(params: Params, source: str) -> Params:
    """``params`` with ``shipped`` resolved to the shipped devices, once every device they name is
    known (a ConfigError naming ``source`` if not)."""
    from edgeqat.devices.profiles import check_device_names, with_shipped_devices

    params = with_shipped_devices(params, source)
    check_device_names(params, source)
    return params


def default_params() -> Params:
    """Every key at its default, resolved as a run's params are."""
    return checked(Params(), "defaults")


def load_run_params(path: str | Path) -> Params:
    """A params file, validated and checked."""
    return checked(load_params(path), str(path))


def parse_run_params(raw: Any, source: str) -> Params:
    """A params mapping (parsed YAML or JSON), validated and checked."""
    return checked(parse_params(raw, source), source)
