"""convert.variants as one switch: a named set (quick | all) or a list. A training stage builds
only the models of requested variants and leaves a marker, with the reason, in place of each
declared output it skips; whoever reads a marker gets that reason."""

from __future__ import annotations

import json

import pytest

from edgeqat.config import ConvertConfig, ClusterConfig, PruneConfig, QatConfig, parse_params
from edgeqat.errors import ConfigError, ModelError
from edgeqat.catalog.variants import SETS, VARIANTS, stand_in, wanted


def test_named_sets_expand_and_a_wrong_name_is_named():
    assert parse_params({"convert": {"variants": "quick"}}).convert.variants == ["fp32", "ptq_int8", "qat_int8"]
    assert parse_params({"convert": {"variants": "all"}}).convert.variants == list(VARIANTS)
    assert ConvertConfig().variants == list(SETS["all"])  # the default: everything, as the demo shows
    with pytest.raises(ConfigError, match=r"convert\.variants: expected a list of variants or one of the sets quick, all"):
        parse_params({"convert": {"variants": "fast"}})
    # a set must still hold what the other sections name
    with pytest.raises(ConfigError, match="evaluate.headline: variant 'mixed' is not in convert.variants"):
        parse_params({"convert": {"variants": "quick"}, "evaluate": {"headline": "mixed"}})


def test_which_stages_a_variant_needs():
    assert wanted("qat", SETS["quick"]) == {"qat_int8"}
    assert wanted("prune", SETS["quick"]) == wanted("cluster", SETS["quick"]) == set()
    assert wanted("prune", ["pcqat_int8"]) == {"pcqat_int8"}  # PCQAT clusters the model prune pruned
    assert wanted("cluster", None) == {"cqat_int8", "pcqat_int8"}


def test_stand_in_only_for_a_variant_the_card_says_could_not_be_built():
    card = {"variants": {"fp32": {}, "ptq_int8": {}}, "not_built": {"qat_int8": "no Keras layers"}}
    assert stand_in("qat_int8", card) == "ptq_int8"
    assert stand_in("fp32", card) == "fp32"
    assert stand_in("mixed", card) == "mixed"  # never asked for: the caller's error, not a silent swap
    assert stand_in("qat_int8", {"variants": {"fp32": {}}, "not_built": {"qat_int8": "x"}}) == "qat_int8"


def test_prune_and_cluster_do_no_work_for_the_quick_set_and_every_output_exists(tmp_path, tiny_prepared):
    """What DVC and a KFP component need: every declared output, here markers naming why."""
    import time

    from edgeqat.steps.cluster import cluster
    from edgeqat.steps.prune import prune

    d = tmp_path
    (d / "fp32.keras").write_bytes(b"never read")  # nothing is loaded when nothing is built
    t0 = time.monotonic()
    p = prune(PruneConfig(), tiny_prepared, d / "fp32.keras", d / "pqat.h5", d / "cp.h5",
              history_path=d / "prune_history.csv", pruned_out=d / "pruned.keras", variants=SETS["quick"])
    c = cluster(ClusterConfig(), tiny_prepared, d / "fp32.keras", d / "pruned.keras", d / "cqat.h5", d / "pcqat.h5",
                variants=SETS["quick"])
    assert time.monotonic() - t0 < 5
    for name, variants in (("pqat.h5", ["pqat_int8"]), ("cp.h5", ["channel_pruned_qat_int8"]),
                           ("pruned.keras", ["pcqat_int8"]), ("cqat.h5", ["cqat_int8"]), ("pcqat.h5", ["pcqat_int8"])):
        rec = json.loads((d / name).read_text())["edgeqat_not_built"]
        assert rec == {"variants": variants, "kind": "not_requested", "reason": "not in convert.variants"}, name
    assert p["not_built"]["pqat_int8"] == "not in convert.variants"  # what the runner writes as metrics/prune.json
    assert (d / "prune_history.csv").read_text().startswith("epoch,")
    assert set(c["not_built"]) == {"cqat_int8", "pcqat_int8"} and set(p["not_built"]) == {
        "pqat_int8", "pcqat_int8", "channel_pruned_qat_int8"}

    from edgeqat.models.io import load_model

    with pytest.raises(ModelError, match=r"cqat\.h5: not built \(cqat_int8\): not in convert.variants"):
        load_model(d / "cqat.h5", quantized=True)


def test_qat_skips_the_mixed_model_only_and_convert_refuses_a_stale_marker(tiny_prepared, tmp_path):
    """qat_int8 without mixed: one fine-tune, a marker for mixed. A later convert asking for
    mixed with that marker says to re-run qat, rather than loading or skipping silently."""
    from compressed_chain import tiny_model

    from edgeqat.models.io import save_model
    from edgeqat.steps.convert import convert
    from edgeqat.steps.qat import qat

    d, p = tmp_path, tiny_prepared
    save_model(tiny_model(), d / "fp32.keras")
    out = qat(QatConfig(epochs=1, batch_size=16), p, d / "fp32.keras", tmp_path / "qat.h5",
              mixed_out=tmp_path / "mixed.h5", variants=["fp32", "qat_int8"])
    assert out["not_built"] == {"mixed": "not in convert.variants"} and "test_accuracy" in out
    assert (tmp_path / "qat.h5").stat().st_size > 10_000
    with pytest.raises(ModelError, match=r"mixed\.h5: the qat stage did not build mixed .*re-run it"):
        convert(ConvertConfig(variants=["fp32", "qat_int8", "mixed"]), p, d / "fp32.keras", tmp_path / "qat.h5",
                tmp_path / "tflite", mixed_model=tmp_path / "mixed.h5")
    assert not (tmp_path / "tflite").exists()  # nothing half-written
