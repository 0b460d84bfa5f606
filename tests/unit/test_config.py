"""params.yaml validation: every error is a ConfigError that names the dotted key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgeqat.config import (
    ConvertConfig,
    Params,
    PrepareConfig,
    QatConfig,
    TrainConfig,
    load_params,
    parse_params,
)
from edgeqat.errors import ConfigError, EdgeqatError
from edgeqat.catalog.variants import VARIANTS, expand

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "params.yaml"


def _error(raw, source: str = "params") -> str:
    with pytest.raises(ConfigError) as info:
        parse_params(raw, source)
    return str(info.value)


# --- the shipped file -------------------------------------------------------------------


def test_shipped_params_yaml_validates_and_matches_file():
    params = load_params(SHIPPED)
    raw = yaml.safe_load(SHIPPED.read_text())
    assert isinstance(params, Params)
    # Every value in the file is what the model holds (nothing silently dropped/renamed).
    for section, values in raw.items():
        model = getattr(params, section)
        for key, value in values.items():
            want = expand(value) if (section, key) == ("convert", "variants") else value  # a named set
            assert getattr(model, key) == want, f"{section}.{key}"
    assert params.prepare.source == raw["prepare"]["source"]
    assert raw["convert"]["variants"] == "all" and params.convert.variants == list(VARIANTS)


def test_empty_and_none_mean_all_defaults():
    assert parse_params(None) == Params()
    assert parse_params({}) == Params()
    p = parse_params({"train": {"epochs": 3}})
    assert p.train.epochs == 3
    assert p.train.batch_size == TrainConfig().batch_size
    assert p.prepare == PrepareConfig()


def test_sections_are_frozen():
    p = parse_params({})
    with pytest.raises(Exception):
        p.train.epochs = 5  # type: ignore[misc]


def test_config_error_is_an_edgeqat_error():
    assert issubclass(ConfigError, EdgeqatError)


# --- invalid values name the dotted key ------------------------------------------------


@pytest.mark.parametrize(
    "raw, key, extra",
    [
        ({"train": {"epoch": 3}}, "train.epoch", "unknown key"),
        ({"train": {"epochs": "ten"}}, "train.epochs", "'ten'"),
        ({"train": {"epochs": 0}}, "train.epochs", "greater than or equal to 1"),
        ({"qat": {"learning_rate": -1}}, "qat.learning_rate", "-1"),
        ({"prepare": {"val_fraction": 1.5}}, "prepare.val_fraction", "1.5"),
        ({"prepare": {"source": "csv"}}, "prepare.source", "'csv'"),
        ({"prepare": {"channels": 2}}, "prepare.channels", "2"),
        ({"prepare": {"image_size": 4}}, "prepare.image_size", "4"),
        ({"convert": {"variants": ["fp32", "int4"]}}, "convert.variants.1", "'int4'"),
        ({"convert": {"variants": []}}, "convert.variants", "at least 1"),
        ({"track": {"experiment": ""}}, "track.experiment", "at least 1 character"),
        ({"cluster": {"number_of_clusters": 1}}, "cluster.number_of_clusters", "greater than or equal to 2"),
        ({"cluster": {"number_of_clusters": 300}}, "cluster.number_of_clusters", "less than or equal to 256"),
        ({"cluster": {"centroid_init": "kmeans"}}, "cluster.centroid_init", "'kmeans_plus_plus'"),
        ({"cluster": {"per_channel": "yes"}}, "cluster.per_channel", "'yes'"),
    ],
)
def test_invalid_value_names_dotted_key(raw, key, extra):
    msg = _error(raw)
    assert f"  {key}: " in msg, msg
    assert extra in msg
    assert msg.startswith("params: invalid parameters")


def test_unknown_section_is_named():
    msg = _error({"bogus": {"a": 1}})
    assert "  bogus: unknown key" in msg


def test_unknown_key_message_does_not_echo_value():
    msg = _error({"train": {"epoch": 3}})
    assert "train.epoch: unknown key" in msg
    assert "got" not in msg


def test_all_errors_reported_together():
    msg = _error({"train": {"epoch": 3, "batch_size": 0}, "prepare": {"source": "csv"}})
    for key in ("train.epoch", "train.batch_size", "prepare.source"):
        assert f"  {key}: " in msg, msg


def test_fractions_must_leave_training_data():
    msg = _error({"prepare": {"val_fraction": 0.5, "test_fraction": 0.45}})
    assert "  prepare: " in msg
    assert "val_fraction + test_fraction" in msg
    assert "0.5 + 0.45" in msg
    # Just under the limit is fine.
    p = parse_params({"prepare": {"val_fraction": 0.4, "test_fraction": 0.4}})
    assert p.prepare.val_fraction == 0.4


def test_finetune_source_needs_path():
    msg = _error({"qat": {"finetune_source": "folder"}})
    assert "  qat: " in msg
    assert "finetune_path" in msg
    # digits is built in and needs no path.
    assert parse_params({"qat": {"finetune_source": "digits"}}).qat.finetune_source == "digits"
    q = parse_params({"qat": {"finetune_source": "npz", "finetune_path": "x.npz"}}).qat
    assert q == QatConfig(finetune_source="npz", finetune_path="x.npz")


def test_section_not_a_mapping_is_named():
    msg = _error({"train": 5})
    assert "  train: " in msg


def test_top_level_not_a_mapping():
    with pytest.raises(ConfigError, match=r"^params\.yaml: expected a mapping of sections, got list"):
        parse_params([1, 2], "params.yaml")


def test_source_name_prefixes_message():
    msg = _error({"train": {"epoch": 1}}, source="my/params.yaml")
    assert msg.startswith("my/params.yaml: invalid parameters")


def test_convert_defaults_list_every_variant():
    assert ConvertConfig().variants == ["fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "ptq_int16x8", "qat_int8",
                                        "mixed", "pqat_int8", "cqat_int8", "pcqat_int8", "channel_pruned_qat_int8"]
    # default_factory: not one list shared between instances
    assert ConvertConfig().variants is not ConvertConfig().variants


# --- load_params: file problems name the file ------------------------------------------


def test_load_params_reads_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("train:\n  epochs: 7\nprepare:\n  source: npz\n  path: data/x.npz\n")
    p = load_params(f)
    assert p.train.epochs == 7
    assert p.prepare.source == "npz"
    assert p.prepare.path == "data/x.npz"


def test_load_params_errors_name_the_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("train:\n  epoch: 7\n")
    with pytest.raises(ConfigError) as info:
        load_params(f)
    assert str(info.value).startswith(f"{f}: invalid parameters")
    assert "train.epoch: unknown key" in str(info.value)


def test_missing_params_file_names_it(tmp_path):
    f = tmp_path / "nope" / "params.yaml"
    with pytest.raises(ConfigError) as info:
        load_params(f)
    assert str(f) in str(info.value)
    assert "not found" in str(info.value)


def test_directory_is_not_a_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path)


def test_invalid_yaml_names_the_file(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_params(f)
    assert str(info.value).startswith(f"{f}: not valid YAML")


def test_empty_yaml_file_gives_defaults(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert load_params(f) == Params()


def test_yaml_scalar_file_is_rejected_with_name(tmp_path):
    f = tmp_path / "scalar.yaml"
    f.write_text("just a string\n")
    with pytest.raises(ConfigError) as info:
        load_params(f)
    assert str(info.value).startswith(f"{f}: expected a mapping of sections, got str")


def test_shipped_params_yaml_equals_the_code_defaults():
    # One source of defaults: a user deleting a key gets what params.yaml shipped with (the
    # default device list is `shipped`, resolved to the same devices in the same order).
    from edgeqat.adapters.run_params import default_params, load_run_params

    assert load_run_params(SHIPPED) == default_params()
