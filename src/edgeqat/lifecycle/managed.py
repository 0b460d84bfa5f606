"""Which registered models edgeqat manages: the main classifier and one model per device.

The register step creates ``register.model_name`` and, from ``edgeqat recommend``'s
choice, ``<model_name>-<device>`` for each device profile. Each carries registered-model
tags ``edgeqat.managed = "true"``; a per-device one also ``edgeqat.device`` (its device
profile) and ``edgeqat.base_model`` (``model_name``). Models registered before those tags
existed are recognised by name, ``<model_name>-<device>``, when their versions carry the
tag ``device = <device>`` (so an unrelated ``<model_name>-something`` is not picked up).

A per-device model is gated on its own device and deployed to ``<deploy_dir>/<device>/``;
the main model is deployed to ``<deploy_dir>/``. No MLflow here: the registry is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from edgeqat.errors import EdgeqatError
from edgeqat.io import contained
from edgeqat.lifecycle.version_tags import VersionTags

MANAGED_TAG = "edgeqat.managed"
DEVICE_TAG = "edgeqat.device"
BASE_TAG = "edgeqat.base_model"
# A device name becomes a folder name: registry tags are editable in the UI, so no "../".
_SAFE_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ModelNotManaged(EdgeqatError):
    """The registered model is neither ``register.model_name`` nor one of its per-device models."""


@dataclass(frozen=True)
class Model:
    """A registered model edgeqat manages; ``device`` is None for the main classifier."""

    name: str
    device: str | None = None

    def folder(self, deploy_dir: str | Path) -> Path:
        """Where its champion is deployed: each device gets a folder of its own."""
        if not self.device:
            return Path(deploy_dir)
        return contained(deploy_dir, self.device, f"registered model {self.name!r}: device")


def safe_device(device: str | None) -> bool:
    return bool(device) and _SAFE_DEVICE.match(device) is not None and ".." not in device


def classify(base: str, name: str, tags: dict[str, str],
             version_devices: Callable[[], Iterable[str]] | None = None) -> Model | None:
    """The managed model ``name`` is, or None. ``version_devices`` (the ``device`` tags of its
    versions) is asked for only when the registered-model tags are missing."""
    if name == base:
        return Model(name)
    device = tags.get(DEVICE_TAG)
    if tags.get(MANAGED_TAG) == "true" and device:
        return Model(name, device) if tags.get(BASE_TAG, base) == base and safe_device(device) else None
    if MANAGED_TAG in tags or not name.startswith(f"{base}-"):
        return None
    suffix = name[len(base) + 1:]
    if safe_device(suffix) and version_devices is not None and suffix in set(version_devices()):
        return Model(name, suffix)
    return None


def _version_devices(reg: Any, name: str) -> Callable[[], list[str]]:
    return lambda: [VersionTags.from_tags(v["tags"]).device or "" for v in reg.all_versions(name)]


def discover(reg: Any, base: str, alias: str = "champion") -> list[tuple[Model, str | None]]:
    """Every managed model on the server with where ``alias`` points now; the main one first."""
    found = []
    for rm in reg.find_models(base):
        m = classify(base, rm["name"], rm["tags"], _version_devices(reg, rm["name"]))
        if m is not None:
            found.append((m, rm["aliases"].get(alias)))
    return sorted(found, key=lambda pair: (pair[0].device is not None, pair[0].name))


def resolve(reg: Any, base: str, name: str) -> Model:
    """The managed model called ``name``; :class:`ModelNotManaged` if it is not one of ours."""
    rm = reg.registered_model(name)  # a missing model is a RegistryError naming it
    m = classify(base, name, rm["tags"], _version_devices(reg, name))
    if m is None:
        raise ModelNotManaged(
            f"registered model {name!r} is not managed by edgeqat for register.model_name {base!r}: expected "
            f"{base!r} or {base}-<device> tagged {MANAGED_TAG}=true, {DEVICE_TAG}=<device>, {BASE_TAG}={base}")
    return m
