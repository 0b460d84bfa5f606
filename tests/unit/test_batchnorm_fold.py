"""BatchNorm folding before clustering, and the scheme that keeps a folded kernel's clusters:
the folded model computes the same, and a convolution feeding a ReLU is still fake-quantized."""

from __future__ import annotations

import numpy as np
import pytest


def _trained(model, shape):
    """A few steps of training so the BatchNorms' moving statistics are not the identity."""
    rng = np.random.default_rng(0)
    x = rng.random((32, *shape), dtype=np.float32)
    y = rng.integers(0, model.output_shape[-1], 32)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model, x


def _functional(keras, unfoldable: bool = True):
    L = keras.layers
    inp = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inp)
    x = L.BatchNormalization(name="conv_bn")(x)
    x = L.ReLU(6.0, name="relu")(x)
    d = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    d = L.BatchNormalization(center=False, name="dw_bn")(d)
    x = L.ReLU(name="dw_relu")(d)
    branch = L.Conv2D(16, 1, activation="relu", name="conv_act")(x)
    if unfoldable:  # an activation in between: this BatchNorm stays
        branch = L.BatchNormalization(name="kept_bn")(branch)
    x = L.Add(name="add")([x, branch])
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dense(4, use_bias=False, name="fc")(x)
    x = L.BatchNormalization(name="fc_bn")(x)
    return keras.Model(inp, L.Softmax(name="probs")(x), name="tiny")


def test_folded_model_computes_the_same_without_the_folded_batchnorms():
    from edgeqat.models.batchnorm import fold_batchnorm
    from edgeqat.tf_compat import keras

    model, x = _trained(_functional(keras), (8, 8, 3))
    folded, names = fold_batchnorm(model)
    assert names == ["conv_bn", "dw_bn", "fc_bn"]
    kinds = {layer.name: type(layer).__name__ for layer in folded.layers}
    assert "kept_bn" in kinds and not {"conv_bn", "dw_bn", "fc_bn"} & set(kinds)
    assert all(folded.get_layer(n).use_bias for n in ("conv", "dw", "fc"))
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    # nothing to fold: the same object back
    plain, none = fold_batchnorm(folded)
    assert plain is folded and none == []


def test_a_sequential_model_is_folded_too():
    from edgeqat.models.batchnorm import fold_batchnorm
    from edgeqat.tf_compat import keras

    L = keras.layers
    seq = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(4, 3, name="c"), L.BatchNormalization(name="b"),
                            L.ReLU(name="r"), L.Flatten(name="f"), L.Dense(3, name="d")], name="seq")
    seq, x = _trained(seq, (6, 6, 1))
    folded, names = fold_batchnorm(seq)
    assert names == ["b"]
    np.testing.assert_allclose(folded.predict(x, verbose=0), seq.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("per_tensor", [True, False])
def test_a_convolution_feeding_a_relu_keeps_its_weight_fake_quant(per_tensor):
    """tfmot's own scheme gives Conv2D -> ReLU a no-op config (weights trained unquantized);
    edgeqat's cluster-preserving scheme quantizes them, per tensor where asked."""
    from edgeqat.compression.annotate import quantize
    from edgeqat.compression.schemes import cluster_preserving_scheme, per_tensor_layers, plain_scheme
    from edgeqat.models.batchnorm import fold_batchnorm
    from edgeqat.tf_compat import keras, tfmot

    with_bn, _ = fold_batchnorm(_trained(_functional(keras), (8, 8, 3))[0])
    assert per_tensor_layers(with_bn) == {"conv", "dw"}  # conv_act feeds the BatchNorm that stays
    folded, _ = fold_batchnorm(_trained(_functional(keras, unfoldable=False), (8, 8, 3))[0])
    assert per_tensor_layers(folded) == {"conv", "dw", "conv_act"}
    assert per_tensor_layers(folded, ("Conv2D",)) == {"conv", "conv_act"}  # the clustered kind
    names = per_tensor_layers(folded) if per_tensor else frozenset()
    theirs = tfmot.quantization.keras.quantize_model(folded)
    assert type(theirs.get_layer("quant_conv").quantize_config).__name__ == "NoOpQuantizeConfig"
    for scheme in (cluster_preserving_scheme(False, names), plain_scheme(names)):
        ours = quantize(folded, scheme=scheme)[0]
        layer = ours.get_layer("quant_conv")
        kernel_q = [w for w in layer.weights if "kernel_min" in w.name]
        assert type(layer.quantize_config).__name__ != "NoOpQuantizeConfig" and kernel_q
        assert kernel_q[0].shape == (() if per_tensor else (8,))
        # a Conv2D with its own activation had a fake-quant already; it keeps it
        assert [w for w in ours.get_layer("quant_conv_act").weights if "kernel_min" in w.name]
        # a depthwise kernel named per tensor gets one range too (convert.per_channel: false)
        dw_q = [w for w in ours.get_layer("quant_dw").weights if "depthwise_kernel_min" in w.name]
        assert dw_q and dw_q[0].shape.rank == (0 if per_tensor else 1)
