"""The one table of what differs between a Keras 3 model file and tf-keras (Keras 2).

Every Keras 3 object a translated config may hold has an entry here; anything else is
refused, naming the layer and the reason. ``tests/unit/test_keras3.py`` builds Keras 3
models that use every entry and checks, entry by entry, that each was used and that the
translated model computes what Keras 3 computes.

What differs, and where it is handled:

- ``LAYERS``: layer classes, with options renamed (``LeakyReLU.negative_slope`` is
  tf-keras' ``alpha``; ``InputLayer.batch_shape`` its ``batch_input_shape``) and Keras 3
  options tf-keras lacks, dropped only at the value where tf-keras computes the same
  (``Dense.quantization_config: null``, ``Resizing.antialias: false``). An option neither
  renamed nor dropped must be one tf-keras takes, or the layer is refused naming it.
- ``MODELS``: ``Functional`` and ``Sequential``, nested ones included (a
  ``keras.applications`` backbone under a head is a ``Functional`` layer of the outer model).
- ``OBJECTS``: what sits in a layer's options: the dtype policy (Keras 3's ``DTypePolicy``
  object is tf-keras' dtype name), initializers, regularizers, constraints. Initializers
  never run on a loaded model, so their Keras 3-only options (``input_axes``) are dropped;
  regularizers and constraints act in the pipeline's fine-tuning and must match exactly.
- ``ACTIVATIONS``: activation names, by what they compute (``silu`` is tf-keras' ``swish``;
  ``hard_sigmoid`` is ``relu6(x + 3) / 6`` in Keras 3 but ``0.2 x + 0.5`` in tf-keras, so it
  is refused rather than renamed).
- ``MARKERS``: Keras 3's plain-data marker ``__keras_tensor__`` in the node graph, rewritten
  as tf-keras' ``[layer, node, tensor, kwargs]``.
- ``REFUSED``: classes that cannot cross, with the reason given to the user.

Module paths (``MODULES``): Keras 3 names a built-in's module as ``keras.layers``,
``keras.src.models.functional`` and so on (the ``keras.src.*`` paths vary between Keras 3
versions), so a module is matched by its package per kind of object; a module outside
``keras``, or a ``registered_name`` of the form ``package>Name``, is the user's own code and
refused, and a ``keras.src.ops`` operation is not a layer.

Weights: both Keras versions store a layer's variables in the same order (the trainable
ones in creation order, then the others), so each entry maps them one to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ANY = object()  # a drop rule for an option that only steers training randomness (a seed)


@dataclass(frozen=True)
class Layer:
    """How one Keras 3 layer class becomes tf-keras'."""

    rename: dict[str, str] = field(default_factory=dict)  # Keras 3 option -> tf-keras option
    drop: dict[str, Any] = field(default_factory=dict)  # Keras 3-only option -> the value at which it is a no-op


_DATA_FORMAT = {"data_format": "channels_last"}  # tf-keras' image layers below assume channels_last
_SEED = {"seed": ANY}

LAYERS: dict[str, Layer] = {
    "InputLayer": Layer(rename={"batch_shape": "batch_input_shape"}, drop={"optional": False}),
    # core
    "Dense": Layer(drop={"quantization_config": None}),
    "Activation": Layer(),
    "Dropout": Layer(),
    "Flatten": Layer(),
    "Reshape": Layer(),
    "Permute": Layer(),
    "Identity": Layer(),
    # convolution
    "Conv2D": Layer(),
    "DepthwiseConv2D": Layer(),
    "SeparableConv2D": Layer(),
    "Conv2DTranspose": Layer(),
    # normalization and activations
    "BatchNormalization": Layer(),
    "LayerNormalization": Layer(drop={"rms_scaling": False}),
    "ReLU": Layer(),
    "LeakyReLU": Layer(rename={"negative_slope": "alpha"}),
    "PReLU": Layer(),
    "ELU": Layer(),
    "Softmax": Layer(),
    # pooling and shape
    "MaxPooling2D": Layer(),
    "AveragePooling2D": Layer(),
    "GlobalAveragePooling2D": Layer(),
    "GlobalMaxPooling2D": Layer(),
    "ZeroPadding2D": Layer(),
    "Cropping2D": Layer(),
    "UpSampling2D": Layer(),
    # merging
    "Add": Layer(),
    "Subtract": Layer(),
    "Multiply": Layer(),
    "Average": Layer(),
    "Maximum": Layer(),
    "Minimum": Layer(),
    "Concatenate": Layer(),
    # regularization (identity at inference)
    "SpatialDropout2D": Layer(drop={**_SEED, **_DATA_FORMAT}),
    "GaussianNoise": Layer(drop=_SEED),
    "GaussianDropout": Layer(drop=_SEED),
    # preprocessing
    "Rescaling": Layer(),
    "Normalization": Layer(),
    "Resizing": Layer(drop={**_DATA_FORMAT, "pad_to_aspect_ratio": False, "fill_mode": "constant", "fill_value": 0.0,
                            "antialias": False}),
    "CenterCrop": Layer(drop=_DATA_FORMAT),
}

# Models: their config holds the layer list and the graph, translated by the walker.
MODELS = {"Functional", "Sequential"}


@dataclass(frozen=True)
class Obj:
    """An object in a layer's options: what tf-keras calls it, and which options it keeps."""

    kind: str  # "dtype", "initializer", "regularizer", "constraint"
    keep: tuple[str, ...] = ()  # options tf-keras takes
    strict: bool = True  # False: other options are dropped (they cannot change a loaded model)


_INIT = ("seed",)
_VARIANCE = ("seed", "scale", "mode", "distribution")

OBJECTS: dict[str, Obj] = {
    # Keras 3's dtype policy object is a plain dtype name in tf-keras (3.0-3.3 called it FloatDTypePolicy)
    "DTypePolicy": Obj("dtype", ("name",)),
    "FloatDTypePolicy": Obj("dtype", ("name",)),
    # initializers: the Keras 3 VarianceScaling family adds input_axes/output_axes
    "Zeros": Obj("initializer"),
    "Ones": Obj("initializer"),
    "Constant": Obj("initializer", ("value",), strict=False),
    "RandomNormal": Obj("initializer", ("mean", "stddev", *_INIT), strict=False),
    "RandomUniform": Obj("initializer", ("minval", "maxval", *_INIT), strict=False),
    "TruncatedNormal": Obj("initializer", ("mean", "stddev", *_INIT), strict=False),
    "GlorotUniform": Obj("initializer", _INIT, strict=False),
    "GlorotNormal": Obj("initializer", _INIT, strict=False),
    "HeNormal": Obj("initializer", _INIT, strict=False),
    "HeUniform": Obj("initializer", _INIT, strict=False),
    "LecunNormal": Obj("initializer", _INIT, strict=False),
    "LecunUniform": Obj("initializer", _INIT, strict=False),
    "VarianceScaling": Obj("initializer", _VARIANCE, strict=False),
    "Orthogonal": Obj("initializer", ("gain", *_INIT), strict=False),
    # regularizers and constraints act while the pipeline fine-tunes: exact matches only
    "L1": Obj("regularizer", ("l1",)),
    "L2": Obj("regularizer", ("l2",)),
    "L1L2": Obj("regularizer", ("l1", "l2")),
    "MaxNorm": Obj("constraint", ("max_value", "axis")),
    "MinMaxNorm": Obj("constraint", ("min_value", "max_value", "rate", "axis")),
    "NonNeg": Obj("constraint"),
    "UnitNorm": Obj("constraint", ("axis",)),
}

# Keras 3 activation name -> the tf-keras name computing the same function.
ACTIVATIONS: dict[str, str] = {
    "linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh",
    "softmax": "softmax", "silu": "swish", "gelu": "gelu", "elu": "elu", "selu": "selu",
    "softplus": "softplus", "softsign": "softsign", "exponential": "exponential", "mish": "mish",
}

# Plain-data markers of Keras 3's serialization, rewritten by the walker.
MARKERS = {"__keras_tensor__"}

# dtype policies the pipeline starts from (it quantizes from float32).
FLOAT32 = {"float32"}

# Classes that cannot cross, and why (the user sees the reason).
REFUSED: dict[str, str] = {
    "Lambda": "it stores Python code, which edgeqat never runs and tf-keras cannot run for a Keras 3 model; "
              "replace it with built-in layers",
    "__lambda__": "it stores Python code, which edgeqat never runs and tf-keras cannot run for a Keras 3 model; "
                  "replace it with built-in layers",
    "TFSMLayer": "it wraps a SavedModel rather than Keras layers; give edgeqat that SavedModel or the Keras model",
    "QuantizedDTypePolicy": "it is already quantized by Keras 3; give edgeqat the float32 model (edgeqat quantizes it)",
    "QuantizedFloat8DTypePolicy": "it is already quantized by Keras 3; give edgeqat the float32 model (edgeqat quantizes it)",
    "Int4DTypePolicy": "it is already quantized by Keras 3; give edgeqat the float32 model (edgeqat quantizes it)",
    "GPTQDTypePolicy": "it is already quantized by Keras 3; give edgeqat the float32 model (edgeqat quantizes it)",
    "AWQDTypePolicy": "it is already quantized by Keras 3; give edgeqat the float32 model (edgeqat quantizes it)",
    "DTypePolicyMap": "it holds per-layer quantization policies; give edgeqat the float32 model",
}
REFUSED_ACTIVATIONS: dict[str, str] = {
    "hard_sigmoid": "Keras 3's hard_sigmoid is relu6(x + 3) / 6 but tf-keras' is 0.2 x + 0.5",
    "hard_silu": "tf-keras has no hard_silu; build it from ReLU(6.0) and Multiply layers",
    "hard_swish": "tf-keras has no hard_swish; build it from ReLU(6.0) and Multiply layers",
}


# Where Keras 3 built-ins live, by kind: ``keras.layers`` or ``keras.src.layers.*`` for layers,
# and so on. Keras 3 writes a keras.ops call in a functional model as an operation from
# ``keras.src.ops.*`` (class ``Multiply``, like the layer): not a layer, refused.
MODULES: dict[str, tuple[str, ...]] = {
    "layer": ("keras.layers", "keras.src.layers"),
    "model": ("keras", "keras.models", "keras.src.models"),
    "object": ("keras", "keras.initializers", "keras.regularizers", "keras.constraints", "keras.dtype_policies",
               "keras.activations", "keras.src.initializers", "keras.src.regularizers", "keras.src.constraints",
               "keras.src.dtype_policies", "keras.src.activations"),
}


def entries() -> set[str]:
    """Every entry of the table, as ``table:name`` (what the translation reports it used)."""
    return ({f"layer:{n}" for n in LAYERS} | {f"model:{n}" for n in MODELS} | {f"object:{n}" for n in OBJECTS}
            | {f"activation:{n}" for n in ACTIVATIONS} | {f"marker:{n}" for n in MARKERS})
