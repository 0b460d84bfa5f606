"""Export: a registered version's .tflite and its model card, checked against the sha256 registered.

For a device whose runtime ships its own file (Vela's compile for an Ethos-U NPU), that file
is what is written, and the card says what it was built from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgeqat.errors import EdgeqatError
from edgeqat.io import CARD_NAME, contained, read_json, redact, sha256_file, write_bytes, write_json
from edgeqat.lifecycle.gates import CHAMPION
from edgeqat.lifecycle.version_tags import VersionTags


def export(reg: Any, name: str, out: str | Path, *, alias: str | None = CHAMPION,
           version: str | None = None, device: str | None = None,
           profiles_dir: str | Path | None = None) -> dict[str, Any]:
    """Download model ``name``'s .tflite and its single-variant model card; verify the sha256 registered.

    With ``device``, what ships is the file that device's runtime makes of the .tflite, if it
    makes one (:meth:`~edgeqat.devices.runtimes.base.Runtime.export`: Vela's compile for an
    Ethos-U profile, ``<stem>_vela.tflite``), and the card names it and how it was built.
    ``export.json`` says which version it is and, with ``alias``, ``<alias>_set: true``."""
    prof = None
    if device is not None:
        from edgeqat.devices.profiles import resolve_profiles

        prof = resolve_profiles([device], extra_dir=profiles_dir)[0]
    out = Path(out)
    if version is None:
        version = reg.alias_version(name, alias)
        if version is None:
            raise EdgeqatError(f"{name!r} has no alias {alias!r}: promote a version first (edgeqat promote VERSION)")
    v = reg.version(name, version)
    expected = VersionTags.from_tags(v["tags"]).sha256
    if not expected:
        raise EdgeqatError(f"{name} version {version}: no sha256 tag (not registered by edgeqat)")
    with tempfile.TemporaryDirectory() as tmp:
        art_dir = reg.download(name, version, Path(tmp), "artifacts")
        cards = list(art_dir.glob(f"**/{CARD_NAME}"))
        if not cards:
            raise EdgeqatError(f"{name} version {version}: no {CARD_NAME} in its artifacts")
        card = read_json(cards[0])
        (variant, entry), = card["variants"].items()
        source = f"{name} version {version}: {CARD_NAME} variants.{variant}.file"  # the registry's word, not ours
        if not str(entry.get("file", "")).endswith(".tflite"):  # nor overwrite the card, export.json, receiver state
            raise EdgeqatError(f"{source}: {entry.get('file')!r} is not a .tflite file name; refused, nothing written")
        tflite = contained(cards[0].parent, entry["file"], source)
        contained(out, entry["file"], source)  # where it would be shipped: checked before anything is read
        got = sha256_file(tflite)
        if got != expected or entry.get("sha256") != expected:
            raise EdgeqatError(f"{name} version {version}: {entry['file']} sha256 {got} does not match the registered "
                               f"{expected} (card says {entry.get('sha256')}); nothing exported")
        shipped, blob, extra = entry["file"], tflite.read_bytes(), {}
        artifact = None
        if prof is not None:
            from edgeqat.devices.runtimes.registry import runtime_for

            artifact = runtime_for(prof).export(tflite, prof)
        if artifact is not None:  # the runtime ships its own file (Vela's compile for an NPU)
            shipped, blob, extra = artifact
            card["variants"][variant]["deployment"] = {**extra, "source_file": entry["file"], "source_sha256": got}
        # File by file (each atomic), never replacing the folder: it may hold other things.
        write_bytes(contained(out, shipped, source), blob)
        write_json(out / CARD_NAME, card)
        write_json(out / "export.json", {"model_name": name, "version": str(version), "alias": alias,
                                         "variant": variant, "file": shipped, "sha256": extra.get("sha256", got),
                                         "registered_sha256": got, "device": device, "tracking_uri": redact(reg.uri),
                                         **({f"{alias}_set": True} if alias else {})})
    return {"version": str(version), "file": str(out / shipped), "sha256": extra.get("sha256", got), "variant": variant}
