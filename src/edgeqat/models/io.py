"""Saving and loading Keras models (FP32 and quantize-wrapped), atomically."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgeqat.errors import ModelError
from edgeqat.io import atomic_path


def save_model(model: Any, dest: str | Path) -> Path:
    """Save by the destination's suffix, under a temp name then renamed.

    Use ``.keras`` for FP32 models and ``.h5`` for quantize-wrapped ones: tf-keras 2.21
    cannot reload tfmot's QuantizeLayer from a ``.keras`` file (it expects 5 variables,
    finds 3), while HDF5 round-trips exactly.
    """
    dest = Path(dest)
    if dest.suffix not in (".keras", ".h5"):
        raise ModelError(f"{dest}: model files must end in .keras or .h5")
    with atomic_path(dest, suffix=dest.suffix) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy")
        # The optimizer state is not needed downstream; only HDF5 accepts the flag.
        model.save(tmp, **({"include_optimizer": False} if dest.suffix == ".h5" else {}))
    return dest


def load_model(path: str | Path, *, quantized: bool = False) -> Any:
    """Load a .keras/.h5 file or a SavedModel folder; ``quantized`` opens tfmot's scope."""
    from edgeqat.tf_compat import keras, tfmot

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    try:
        if quantized:
            with tfmot.quantization.keras.quantize_scope():
                return keras.models.load_model(path, compile=False)
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for unreadable files
        raise ModelError(f"{path}: cannot load Keras model: {err}") from None
