"""What takes the space in the component image: run INSIDE it (bench/containers.py mounts this
file); prints one JSON document. Sizes are the files each installed distribution lists (its
RECORD), so they add up to the venv's size; a dependency counts towards a package only when
nothing else the image installs needs it."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DISTS = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}


def _size(dist: md.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total


SIZES = {name: _size(d) for name, d in DISTS.items()}


def requires(name: str) -> set[str]:
    """The installed distributions ``name`` needs (no extras; markers evaluated here)."""
    out = set()
    for text in DISTS[name].requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if canonicalize_name(req.name) in DISTS:
            out.add(canonicalize_name(req.name))
    return out


def closure(roots) -> set[str]:
    seen: set[str] = set()
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name not in seen and name in DISTS:
            seen.add(name)
            todo.extend(requires(name))
    return seen


def only_via(drop: set[str], keep: set[str] = frozenset()) -> dict[str, int]:
    """Distributions that leave the image with ``drop`` from edgeqat's requirements (``keep`` stays)."""
    rest = closure((requires("edgeqat") - drop) | set(keep)) | {"edgeqat"}
    return {n: SIZES[n] for n in closure(drop) - rest}


def suffix_total(root: Path, suffixes: tuple[str, ...]) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(suffixes) or ".so." in f and ".so" in suffixes:
                total += os.path.getsize(os.path.join(dirpath, f))
    return total


def main() -> None:
    venv = Path(sys.prefix)
    biggest = sorted(SIZES.items(), key=lambda kv: -kv[1])
    print(json.dumps({
        "venv": str(venv),
        "distributions": len(DISTS),
        "venv_files_bytes": sum(SIZES.values()),
        "largest": biggest[:12],
        "shared_objects_bytes": suffix_total(venv, (".so",)),
        "bytecode_bytes": suffix_total(venv, (".pyc",)),
        "dvc_only": only_via({"dvc"}),
        "mlflow_beyond_skinny": only_via({"mlflow"}, keep={"mlflow-skinny"}),
        "kfp_only": only_via({"kfp"}),
    }))


if __name__ == "__main__":
    main()
