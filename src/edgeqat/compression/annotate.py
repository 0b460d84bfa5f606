"""Wrap a model for quantization-aware training, layer by layer, so tfmot's gaps degrade
instead of failing.

tfmot's ``quantize_model`` refuses the whole model when one layer is missing from its
registry (``Rescaling``, ``Normalization``, ``Resizing``, TF op layers such as
``tf.math.multiply``), which users' models often contain. Here every layer is annotated:

- layers tfmot knows get its default config (weights and activations fake-quantized);
- layers it does not know get *output-only* fake-quant (tfmot's own
  ``Default8BitOutputQuantizeConfig``): their maths stays float in Keras, but the converter
  finds a range on their output, so the .tflite is still integer end to end;
- layers named in ``floating`` (mixed precision) are left unwrapped.

The names of the layers given output-only fake-quant are returned, so the stage can say so.
"""

from __future__ import annotations

from typing import Any, Iterable

from edgeqat.errors import ModelError
from edgeqat.models.graph import inbound_layers


def unsupported_layers(model: Any) -> list[str]:
    """Layers tfmot's default 8-bit registry cannot quantize (input layers aside)."""
    from edgeqat.tf_compat import tfmot_8bit

    registry = tfmot_8bit.default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    out = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer" or registry.supports(layer) or kind in _TRANSFORMED:
            continue
        if kind == "BatchNormalization" and _after_weighted(layer):
            continue  # folded into the convolution before the registry is asked
        out.append(layer.name)
    return out


# Rewritten by tfmot's layout transforms before the registry is consulted.
_TRANSFORMED = ("SeparableConv1D", "SeparableConv2D")


def _after_weighted(layer: Any) -> bool:
    ins = inbound_layers(layer)
    # a SeparableConv2D becomes DepthwiseConv2D + Conv2D (_TRANSFORMED), whose Conv2D takes the fold
    return len(ins) == 1 and type(ins[0]).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D")


AFFINE = ("Rescaling", "Normalization")


def affine_as_depthwise(layer: Any, keras: Any) -> tuple[Any, list[Any]]:
    """A per-channel affine preprocessing layer (``Rescaling``, ``Normalization``) as the
    1x1 DepthwiseConv2D computing the same ``x * scale + offset``, which tfmot quantizes
    (weights and output) so the .tflite stays integer; returns (layer, its weights)."""
    import numpy as np

    channels = int(layer.input_shape[-1])
    probe = np.stack([np.zeros(channels), np.ones(channels), np.full(channels, 2.0)]).astype(np.float32)
    out = np.asarray(layer(probe.reshape(3, 1, 1, channels))).reshape(3, -1)
    offset, scale = out[0], out[1] - out[0]
    if out.shape[1] != channels or not np.allclose(out[2], offset + 2 * scale, rtol=1e-4, atol=1e-5):
        raise ModelError(f"layer {layer.name!r} ({type(layer).__name__}) is not a per-channel affine map; "
                         "tfmot cannot quantize it")
    # not trainable: preprocessing stays what the user defined, as the original layer did
    new = keras.layers.DepthwiseConv2D(1, use_bias=True, name=layer.name, trainable=False)
    return new, [scale.reshape(1, 1, channels, 1), offset]


def quantize(model: Any, floating: Iterable[str] = (), scheme: Any = None, what: str = "quantize") -> tuple[Any, dict[str, list[str]]]:
    """(QAT-wrapped model, what was done to the layers tfmot has no config for:
    ``{"as_depthwise": [...], "output_only": [...]}``). ``scheme``: a tfmot QuantizeScheme
    (default 8-bit when None; the prune-preserving one for PQAT)."""
    from edgeqat.tf_compat import keras, tfmot, tfmot_8bit

    q = tfmot.quantization.keras
    configs = tfmot_8bit.default_8bit_quantize_configs

    floating = set(floating)
    unknown = [n for n in unsupported_layers(model) if n not in floating]
    affine = [n for n in unknown if type(model.get_layer(n)).__name__ in AFFINE]
    fallback = [n for n in unknown if n not in affine]
    report = {"as_depthwise": affine, "output_only": fallback}
    if not floating and not unknown:
        try:  # the common case, exactly tfmot's own path
            return q.quantize_apply(q.quantize_annotate_model(model), *([scheme] if scheme else [])), report
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"tfmot cannot {what} model {model.name!r}: {err}") from None

    weights: dict[str, list[Any]] = {}

    def annotate(layer: Any) -> Any:
        if layer.name in affine:
            clone, weights[layer.name] = affine_as_depthwise(layer, keras)
        else:
            clone = layer.__class__.from_config(layer.get_config())
            weights[layer.name] = layer.get_weights()
        if layer.name in floating or type(layer).__name__ == "InputLayer":
            return clone
        if layer.name in fallback:
            return q.quantize_annotate_layer(clone, configs.Default8BitOutputQuantizeConfig())
        return q.quantize_annotate_layer(clone)

    try:
        annotated = keras.models.clone_model(model, clone_function=annotate)
        for layer in annotated.layers:
            inner = getattr(layer, "layer", layer)  # QuantizeAnnotate wraps the clone
            if weights.get(inner.name):
                inner.set_weights(weights[inner.name])
        with q.quantize_scope():
            wrapped = q.quantize_apply(annotated, *([scheme] if scheme else []))
    except (ValueError, RuntimeError, TypeError) as err:
        kept = f" keeping {sorted(floating)} in float" if floating else ""
        raise ModelError(f"tfmot cannot {what} model {model.name!r}{kept}: {err}") from None
    return wrapped, report
