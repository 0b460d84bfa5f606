"""Small image classifiers that quantize well with tfmot (Conv/DepthwiseConv/BN/ReLU/Add/Dense).

- ``dscnn``: depthwise-separable CNN for small inputs; ~0.13 M parameters at width 1,
  enough that int8 shows its real ~4x size ratio (tiny models are dominated by the
  flatbuffer's fixed overhead).
- ``mobilenetv2``: Keras Applications' MobileNetV2 (``alpha``; inputs >= 32x32).
- ``resnet``: a ResNet-style net with identity and projection shortcuts (residual adds).

The classifier head outputs logits; softmax is left out so argmax works on int8 outputs
without an extra requantization.
"""

from __future__ import annotations

from typing import Any

from edgeqat.errors import ConfigError, ModelError

ZOO = ("dscnn", "mobilenetv2", "resnet")


def _conv_bn_relu(keras: Any, x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
    L = keras.layers
    x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def _ds_block(keras: Any, x: Any, filters: int, stride: int, name: str) -> Any:
    L = keras.layers
    x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = L.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(x)
    x = L.ReLU(name=f"{name}_dw_relu")(x)
    return _conv_bn_relu(keras, x, filters, 1, 1, f"{name}_pw")


def build_dscnn(keras: Any, input_shape: tuple, num_classes: int, alpha: float, dropout: float) -> Any:
    w = lambda f: max(8, int(f * alpha))  # noqa: E731
    inp = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(keras, inp, w(32), 3, 1 if input_shape[0] <= 32 else 2, "stem")
    for i, (filters, stride) in enumerate([(64, 1), (128, 2), (128, 1), (256, 2), (256, 1)]):
        x = _ds_block(keras, x, w(filters), stride, f"block{i + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="dscnn")


def _res_block(keras: Any, x: Any, filters: int, stride: int, name: str) -> Any:
    L = keras.layers
    shortcut = x
    y = _conv_bn_relu(keras, x, filters, 3, stride, f"{name}_a")
    y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = L.BatchNormalization(momentum=0.9, name=f"{name}_b_bn")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj_conv")(x)
        shortcut = L.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
    y = L.Add(name=f"{name}_add")([y, shortcut])
    return L.ReLU(name=f"{name}_out")(y)


def build_resnet(keras: Any, input_shape: tuple, num_classes: int, alpha: float, dropout: float) -> Any:
    w = lambda f: max(8, int(f * alpha))  # noqa: E731
    inp = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(keras, inp, w(16), 3, 1, "stem")
    for i, (filters, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
        x = _res_block(keras, x, w(filters), stride, f"res{i + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="resnet")


def build_mobilenetv2(
    keras: Any, input_shape: tuple, num_classes: int, alpha: float, dropout: float, weights: str | None
) -> Any:
    if min(input_shape[:2]) < 32:
        raise ConfigError(f"train.model 'mobilenetv2' needs inputs of at least 32x32 (prepare.image_size is {input_shape[0]})")
    base = keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=alpha, include_top=False, weights=None, pooling="avg"
    )
    x = keras.layers.Dropout(dropout, name="dropout")(base.output)
    out = keras.layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(base.input, out, name=f"mobilenetv2_{alpha:g}")
    if weights:
        _load_weights(model, weights)
    else:
        # Keras' 0.999 suits ImageNet-length training; from scratch on a few thousand images the
        # moving statistics never catch up and validation stays at chance (seen on digits at 32x32).
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
    return model


def _load_weights(model: Any, path: str) -> None:
    from pathlib import Path

    if not Path(path).exists():
        raise ModelError(f"{path}: weights file not found (train.weights)")
    try:
        model.load_weights(path, by_name=path.endswith(".h5"), skip_mismatch=path.endswith(".h5"))
    except Exception as err:  # Keras raises a zoo of types for bad files
        raise ModelError(f"{path}: cannot load weights into {model.name}: {err}") from None


def build_model(name: str, input_shape: tuple, num_classes: int, *, alpha: float = 1.0,
                dropout: float = 0.2, weights: str | None = None) -> Any:
    from edgeqat.tf_compat import keras

    if name == "dscnn":
        model = build_dscnn(keras, input_shape, num_classes, alpha, dropout)
    elif name == "resnet":
        model = build_resnet(keras, input_shape, num_classes, alpha, dropout)
    elif name == "mobilenetv2":
        return build_mobilenetv2(keras, input_shape, num_classes, alpha, dropout, weights)
    else:
        raise ConfigError(f"train.model: unknown model {name!r} (choose from {', '.join(ZOO)})")
    if weights:
        _load_weights(model, weights)
    return model
