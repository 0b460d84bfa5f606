"""A variant that is not shipped, added as one entry in edgeqat.catalog.variants.REGISTRY and nothing
else: the params check accepts it, the converter makes it from its entry's fields alone, the
convert step writes it into the model card, the recommendation describes it, and the report
lists it in pipeline order. If any of them still branched on variant names, this fails."""

from __future__ import annotations

import pytest

from edgeqat.catalog.variants import REGISTRY, Variant

# float16 weights from the FP32 model: the switches ptq_float16 gets, under a name no module knows.
TOY = Variant("toy_half", "toy float16 weights (a test's variant)", weights="float16")


@pytest.fixture
def toy(monkeypatch):
    """The toy entry registered for one test (and gone after it)."""
    monkeypatch.setitem(REGISTRY, TOY.name, TOY)
    return TOY


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory, tiny_prepared):
    """An untrained 16x16x1 -> 4 classes Keras model, saved as the train stage saves one."""
    from edgeqat.data.shards import load_meta
    from edgeqat.tf_compat import keras

    meta = load_meta(tiny_prepared)
    keras.utils.set_random_seed(0)
    x = keras.Input(tuple(meta["image_shape"]))
    y = keras.layers.Conv2D(4, 3, activation="relu")(x)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(x, keras.layers.Dense(len(meta["class_names"]), activation="softmax")(y))
    path = tmp_path_factory.mktemp("toy_variant") / "fp32.keras"
    model.save(path)
    return path


def test_the_toy_is_unknown_until_registered():
    from edgeqat.config import parse_params
    from edgeqat.errors import ConfigError

    with pytest.raises(ConfigError, match=r"convert\.variants\.1: unknown variant 'toy_half' \(known: fp32, "):
        parse_params({"convert": {"variants": ["fp32", "toy_half"]}})


def test_an_entry_with_a_format_the_converter_has_no_switch_for_is_refused_where_it_is_written():
    with pytest.raises(ValueError, match=r"variant 'toy_half': weights 'f16' is not one of float32, float16, int8"):
        Variant("toy_half", "typo", weights="f16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"variant 'toy_qat': model 'toy_model' needs the training stage"):
        Variant("toy_qat", "no stage", weights="int8", activations="int8", model="toy_model")


def test_a_registered_variant_is_accepted_by_the_params(toy):
    from edgeqat.config import ConvertConfig, parse_params
    from edgeqat.catalog.variants import wanted

    p = parse_params({"convert": {"variants": ["fp32", "toy_half"]}, "evaluate": {"headline": "toy_half"},
                      "validate": {"model": "toy_half"}, "register": {"variant": "toy_half"}})
    assert p.convert.variants == ["fp32", "toy_half"]
    assert ConvertConfig().variants[-1] == "toy_half"  # "all", the default, is every entry
    assert parse_params({"convert": {"variants": "all"}}).convert.variants[-1] == "toy_half"
    assert not any(wanted(stage, ["toy_half"]) for stage in ("qat", "prune", "cluster"))  # no training stage runs


def test_a_registered_variant_is_converted_from_its_entry(toy, tiny_fp32):
    from edgeqat.models.io import load_model
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.quantization.inspect import card_facts

    fp32 = load_model(tiny_fp32)
    blob = convert_variant("toy_half", fp32, None, None, "int8")
    facts = card_facts(blob)
    assert facts["weights"]["dtypes"] == ["float16"], facts["weights"]["dtypes"]
    assert facts["input"]["dtype"] == "float32"  # a float variant: io_dtype is for integer ones
    # The same switches as the shipped float16 variant: the same file.
    assert blob == convert_variant("ptq_float16", fp32, None, None, "int8")


def test_the_convert_step_writes_it_and_the_recommendation_and_report_name_it(toy, tiny_fp32, tiny_prepared, tmp_path):
    from edgeqat.config import ConvertConfig, PruneConfig
    from edgeqat.io import CARD_NAME, read_json
    from edgeqat.recommend.candidates import Sources, existing
    from edgeqat.reporting.tables import ordered_variants
    from edgeqat.steps.convert import convert

    out = tmp_path / "tflite"
    metrics = convert(ConvertConfig(variants=["toy_half"]), tiny_prepared, tiny_fp32, None, out)
    assert "toy_half" in metrics
    card = read_json(out / CARD_NAME)
    assert card["variants"]["toy_half"]["weights"]["dtypes"] == ["float16"]

    found = {c.name: c for c in existing(Sources(tiny_prepared, out, tiny_fp32, None, tmp_path, PruneConfig()))}
    assert found["toy_half"].description == TOY.description
    assert found["toy_half"].integer_only is False

    summary = {"variants": {name: {} for name in sorted(["toy_half", "qat_int8", "fp32", "ptq_int8"])}}
    assert [n for n, _ in ordered_variants(summary)] == ["fp32", "ptq_int8", "qat_int8", "toy_half"]
