import pytest

from edgeqat.errors import ConfigError


@pytest.mark.parametrize("name", ["dscnn", "resnet"])
def test_zoo_models_build_and_quantize(name):
    from edgeqat.models.zoo import build_model
    from edgeqat.compression.recipes import quantize

    m = build_model(name, (16, 16, 1), 5, alpha=0.25)
    assert m.output_shape == (None, 5)
    q = quantize(m)
    assert any("quant" in layer.name for layer in q.layers)


def test_resnet_has_residual_adds():
    from edgeqat.models.zoo import build_model

    m = build_model("resnet", (16, 16, 3), 3, alpha=0.5)
    assert any(type(layer).__name__ == "Add" for layer in m.layers)


def test_default_dscnn_is_large_enough_for_a_real_int8_ratio():
    from edgeqat.models.zoo import build_model

    assert build_model("dscnn", (16, 16, 1), 10).count_params() > 100_000


def test_mobilenetv2_refuses_small_inputs():
    from edgeqat.models.zoo import build_model

    with pytest.raises(ConfigError, match="at least 32x32"):
        build_model("mobilenetv2", (16, 16, 1), 10)


@pytest.mark.slow
def test_mobilenetv2_builds_and_quantizes():
    from edgeqat.models.zoo import build_model
    from edgeqat.compression.recipes import quantize

    m = build_model("mobilenetv2", (32, 32, 3), 10, alpha=0.35)
    assert m.output_shape == (None, 10)
    quantize(m)


def test_mobilenetv2_from_scratch_uses_fast_batchnorm_statistics():
    # Keras' default 0.999 left MobileNetV2 at chance on digits at 32x32 (bench/compression_results.md).
    from edgeqat.models.zoo import build_model
    from edgeqat.tf_compat import keras

    model = build_model("mobilenetv2", (32, 32, 1), 10, alpha=0.35)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(layer.momentum == 0.9 for layer in bns)
