"""The one place TensorFlow, Keras and tfmot are imported from.

tensorflow-model-optimization 0.8.1 only works with Keras 2, which TF 2.21 ships as
the separate ``tf_keras`` package; ``TF_USE_LEGACY_KERAS`` must be set before
TensorFlow is first imported, so every module gets TF through here, lazily:

    from edgeqat.tf_compat import tf, keras, tfmot   # inside a function
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from edgeqat.progress import native_stderr_filtered, verbose

os.environ["TF_USE_LEGACY_KERAS"] = "1"

# Quiet by default: TensorFlow's C++ logging, absl, the CUDA probe on a machine without a GPU,
# oneDNN's notice and the converter's warnings would bury the pipeline's own lines. C++ reads
# its level once, when TensorFlow loads; --verbose (EDGEQAT_VERBOSE=1) lets everything through.
# A level the user set (TF_CPP_MIN_LOG_LEVEL=1) is kept.
if not os.environ.get("TF_CPP_MIN_LOG_LEVEL"):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose() else "3"


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def _quiet_python_loggers() -> None:
    """TensorFlow's and absl's Python loggers to errors only. absl sets its logger's level again
    whenever its verbosity flag is set (the TFLite converter does), so a filter holds it there."""
    if not verbose():
        for name in ("tensorflow", "absl", "h5py"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.ERROR)
            if _errors_only not in logger.filters:
                logger.addFilter(_errors_only)


_quiet_python_loggers()
if not verbose():
    # The TFLite converter's and Keras's advice (UserWarning), the deprecations of tfmot and Keras 2,
    # setuptools' distutils shim and pkg_resources (tfmot still imports distutils), protobuf's.
    warnings.filterwarnings("ignore", module=r"(tensorflow|tf_keras|tensorflow_model_optimization|keras|_distutils_hack"
                                             r"|setuptools|pkg_resources|distutils|google\.protobuf|absl|h5py)(\.|$)")

# What TensorFlow's and LiteRT's native code print where no log level applies (while TensorFlow
# loads, before absl's logging is set up; the converter's calibration; LiteRT's first XNNPACK
# delegate): dropped by quiet_native() unless --verbose; any other line is written back.
NATIVE_NOISE = (
    r"All log messages before absl::InitializeLog\(\) is called",
    r"^[IW]\d{4} [\d:. ]+\d+ \w+\.cc:\d+\]",  # absl's INFO/WARNING lines
    r"To enable the following instructions: .* rebuild TensorFlow",
    r"^fully_quantize: \d+, inference_type: ",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate",
)


def quiet_native() -> Any:
    """A context in which those lines are dropped (edgeqat.progress.native_stderr_filtered)."""
    return native_stderr_filtered(NATIVE_NOISE)


_cache: dict[str, Any] = {}


def _load(name: str) -> Any:
    if name not in _cache:
        if name != "tf":
            _load("tf")  # first, whatever loads it (tf_keras does): its start-up noise is filtered there
        if name == "tf":
            with quiet_native():
                import tensorflow as mod
            _quiet_python_loggers()
        elif name == "keras":
            import tf_keras as mod
        elif name == "tfmot":
            import tensorflow_model_optimization as mod
        elif name == "tfmot_8bit":  # tfmot's registry and configs, not in its public API
            _load("tfmot")
            from tensorflow_model_optimization.python.core.quantization.keras import default_8bit as mod
        elif name == "tfmot_quant":  # tfmot's quantization internals (edgeqat.compression.schemes)
            _load("tfmot")
            from tensorflow_model_optimization.python.core.quantization import keras as mod
        elif name == "tfmot_cluster_wrapper":  # tfmot's ClusterWeights wrapper (edgeqat.compression.clustering)
            _load("tfmot")
            from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper as mod
        else:  # pragma: no cover - guarded by __getattr__
            raise AttributeError(name)
        _cache[name] = mod
    return _cache[name]


def __getattr__(name: str) -> Any:
    # PEP 562: `from edgeqat.tf_compat import tf` triggers the import only here.
    if name in ("tf", "keras", "tfmot", "tfmot_8bit", "tfmot_quant", "tfmot_cluster_wrapper"):
        return _load(name)
    raise AttributeError(f"module 'edgeqat.tf_compat' has no attribute {name!r}")


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TF and make TF's kernels deterministic, so a forced re-run
    of a stage reproduces its metrics. Keras' global state (layer-name counters, the graph
    its random initialisers count ops in) is reset first: a step then computes the same
    whether it runs in a fresh process (DVC, KFP) or after other models in the same one."""
    tf = _load("tf")
    _load("keras").backend.clear_session()
    _load("keras").utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
