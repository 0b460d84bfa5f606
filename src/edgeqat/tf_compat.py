"""The one place TensorFlow, Keras and tfmot are imported from.

tensorflow-model-optimization 0.8.1 only works with Keras 2, which TF 2.21 ships as
the separate ``tf_keras`` package; ``TF_USE_LEGACY_KERAS`` must be set before
TensorFlow is first imported, so every module gets TF through here, lazily:

    from edgeqat.tf_compat import tf, keras, tfmot   # inside a function
"""

from __future__ import annotations

import os
from typing import Any

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Quieter startup: TF's C++ INFO/WARNING lines drown the pipeline's own progress.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_cache: dict[str, Any] = {}


def _load(name: str) -> Any:
    if name not in _cache:
        if name == "tf":
            import tensorflow as mod
        elif name == "keras":
            import tf_keras as mod
        elif name == "tfmot":
            import tensorflow_model_optimization as mod
        elif name == "tfmot_8bit":  # tfmot's registry and configs, not in its public API
            _load("tfmot")
            from tensorflow_model_optimization.python.core.quantization.keras import default_8bit as mod
        elif name == "tfmot_cluster_wrapper":  # tfmot's ClusterWeights wrapper (edgeqat.compression.clustering)
            _load("tfmot")
            from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper as mod
        else:  # pragma: no cover - guarded by __getattr__
            raise AttributeError(name)
        _cache[name] = mod
    return _cache[name]


def __getattr__(name: str) -> Any:
    # PEP 562: `from edgeqat.tf_compat import tf` triggers the import only here.
    if name in ("tf", "keras", "tfmot", "tfmot_8bit", "tfmot_cluster_wrapper"):
        return _load(name)
    raise AttributeError(f"module 'edgeqat.tf_compat' has no attribute {name!r}")


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TF and make TF's kernels deterministic, so a forced re-run
    of a stage reproduces its metrics."""
    tf = _load("tf")
    _load("keras").utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
