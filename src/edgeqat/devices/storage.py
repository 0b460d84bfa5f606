"""The bytes a device stores for a model, by that device's own measure.

- LiteRT and TensorFlow Lite Micro read the .tflite flatbuffer as it is, so a device running
  them stores its bytes: zero and clustered weights take as much room there as any other.
- An Arm Ethos-U device stores what Vela compiled: Vela's figure for the memory its memory
  mode keeps the weights in (its encoded weights and command stream): flash on the U55
  profiles (``Shared_Sram``), DRAM on the U65 one (``Dedicated_Sram``, where Vela's DRAM
  figure also counts any feature maps it places there). Vela's weight encoder compresses
  runs of zeros and a small palette of distinct values, so pruning and clustering shrink it
  (measured: bench/clustering_results.md).
- A download is the gzip of the flatbuffer (the evaluate stage's ``gzip_bytes``).

For Ethos-U the same Vela compile also gives the performance model's cycles and time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from edgeqat.devices.profiles import DeviceProfile
from edgeqat.devices.runtimes.registry import runtime_for
from edgeqat.devices.runtimes.vela import vela_stored
from edgeqat.devices.workload import Workload, analyze

MEASURES = {"flatbuffer": "flatbuffer bytes (LiteRT / TFLite Micro)",
            "vela_flash": "Vela-encoded flash bytes (Ethos-U, weights in flash)",
            "vela_dram": "Vela-encoded DRAM bytes (Ethos-U, weights in DRAM)"}


def stores_flatbuffer(prof: DeviceProfile) -> bool:
    """True when the device keeps the .tflite as it is (LiteRT, TFLite Micro)."""
    return runtime_for(prof).stores_flatbuffer


def runs_dtype(prof: DeviceProfile, work: Workload) -> Optional[str]:
    """Why the device cannot run the model's arithmetic at all, or None."""
    if prof.int8_only and work.float_ops:
        return "runs integer ops only (float ops in the model)"
    if prof.int8_only and work.int16_ops:
        return "runs int8 ops only (int16 ops in the model)"
    return None


def stored_size(path: str | Path, prof: DeviceProfile, vela_cache: Optional[dict] = None,
                work: Optional[Workload] = None) -> dict[str, Any]:
    """``{"measure", "bytes"}`` (bytes None when the device cannot run the model, with ``why``),
    plus Vela's ``cycles`` and ``inference_ms`` on Ethos-U."""
    path = Path(path)
    work = analyze(path) if work is None else work
    out: dict[str, Any] = {"measure": "flatbuffer" if stores_flatbuffer(prof) else "vela", "bytes": None}
    why = runs_dtype(prof, work)
    if why is not None:
        out["why"] = f"{prof.name} {why}"
        return out
    if stores_flatbuffer(prof):
        out["bytes"] = path.stat().st_size
        return out
    from edgeqat.devices.vela import compile_cached

    res = compile_cached(path, prof.vela, dict(work.ops), vela_cache)
    if not res.ran:
        out["why"] = f"no Vela figures: {res.error}"
        return out
    out["measure"], out["bytes"] = vela_stored(res)
    out.update(cycles=res.cycles, inference_ms=res.inference_ms)
    return out


def storage_table(files: dict[str, Path], profiles: list[DeviceProfile],
                  vela_cache: Optional[dict] = None) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {device: stored_size}} for every variant file on every profile."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for variant, path in files.items():
        work = analyze(path)
        table[variant] = {p.name: stored_size(path, p, vela_cache, work) for p in profiles}
    return table
