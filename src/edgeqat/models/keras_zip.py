"""Reading a ``.keras`` zip without trusting its sizes.

A ``.keras`` file is a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5``
(plus ``assets/`` for a few layer types). Its central directory states every member's
unpacked size, and Python's zipfile never unpacks more than that size, so the caps below
are checked from the directory alone, before any member is read: a config of 1.5 GiB of
whitespace or a weights file of 3 GiB of zeros (a few MB zipped) is refused at once.

The caps leave wide room for real models: MobileNetV2's Keras 3 ``config.json`` is 163 KB
and its nesting 15 levels deep; 1 GiB of float32 weights is 268M parameters, far beyond any
edge device. The same caps guard a packed SavedModel (:mod:`edgeqat.models.exported`), whose
variables count as weights.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from edgeqat.errors import ModelError

MiB = 1 << 20
CONFIG_MAX = 16 * MiB  # config.json
METADATA_MAX = 1 * MiB  # metadata.json
WEIGHTS_MAX = 1024 * MiB  # model.weights.h5 (also .npz, Keras 3's other weights store)
OTHER_MAX = 64 * MiB  # anything else (assets/...)
MEMBERS_MAX = 1000
JSON_DEPTH_MAX = 100  # nesting of config.json / metadata.json

_CAPS = {"config.json": CONFIG_MAX, "metadata.json": METADATA_MAX, "model.weights.h5": WEIGHTS_MAX,
         "model.weights.npz": WEIGHTS_MAX}


def _size(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / MiB:.1f} MiB"


def check_members(path: str | Path) -> list[zipfile.ZipInfo]:
    """The zip's members, after checking each stated size against its cap; ModelError otherwise."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelError(f"{path}: not a readable .keras archive (a .keras file is a zip): {err}") from None
    if len(infos) > MEMBERS_MAX:
        raise ModelError(f"{path}: the archive lists {len(infos)} members (at most {MEMBERS_MAX} for a model); refused")
    for info in infos:
        weights = info.filename.startswith("saved_model/variables/")  # a packed SavedModel's
        cap = WEIGHTS_MAX if weights else _CAPS.get(info.filename, OTHER_MAX)
        if info.file_size > cap:
            raise ModelError(f"{path}: member {info.filename} would unpack to {_size(info.file_size)} (limit "
                             f"{_size(cap)}); refused without reading it")
    return infos


def read_json(path: str | Path, member: str) -> Any:
    """One JSON member of the zip (sizes checked first), its nesting bounded."""
    path = Path(path)
    names = {i.filename for i in check_members(path)}
    if member not in names:
        raise ModelError(f"{path}: the archive has no {member} (not a Keras model file?)")
    try:
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read(member))
    except RecursionError:
        raise ModelError(f"{path}: {member} is nested deeper than {JSON_DEPTH_MAX} levels; refused") from None
    except (ValueError, zipfile.BadZipFile, OSError) as err:  # JSONDecodeError is a ValueError; CRC errors
        raise ModelError(f"{path}: cannot read {member}: {err}") from None
    check_depth(data, f"{path}: {member}")
    return data


def check_depth(data: Any, where: str, limit: int = JSON_DEPTH_MAX) -> None:
    """Refuse JSON nested deeper than ``limit`` (walked without recursion): every walker of a
    model config after this may recurse freely."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise ModelError(f"{where} is nested deeper than {limit} levels; refused")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
