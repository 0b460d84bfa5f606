"""Per-device recommendation on the tiny compressed chain (the `comp` fixture): real candidates,
real runtimes, budgets set around the chain's own sizes so each case is decided by a budget."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from edgeqat.config import PruneConfig, RecommendConfig, ValidateConfig
from edgeqat.devices.profiles import load_profile_file, shipped_profile_files
from edgeqat.recommend.search import rank_key

from compressed_chain import TINY_PRUNE


NO_QEMU = ValidateConfig(emulate=False)  # the chosen model's final validation: LiteRT/TFLM/Vela, no emulator


def _profile(tmp_path, base, **changes):
    raw = load_profile_file(next(p for p in shipped_profile_files() if p.stem == base)).model_dump()
    raw.update(changes)
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _run(comp, tmp_path, devices, **cfg):
    from edgeqat.steps.recommend import recommend

    d = comp["dir"]
    # These tests are about device budgets; the accuracy budget is the shipped one (it is never
    # switched off: test_the_accuracy_budget_... below rejects a candidate with it).
    c = RecommendConfig(**{"enabled": True, "budget_accuracy_drop": RecommendConfig().budget_accuracy_drop,
                           "sparsities": [], "channel_fractions": [0.7], "latency_runs": 3, **cfg})
    m = recommend(c, comp["prepared"], d / "tflite", d / "fp32.keras", d / "qat.h5",
                  tmp_path / "report", tmp_path / "recommended", prune=PruneConfig(**TINY_PRUNE), devices=devices,
                  validate=NO_QEMU)
    return m, json.loads((tmp_path / "report" / "recommendation.json").read_text())


def test_flash_budget_plain_qat_exceeds_gets_a_narrower_integer_model(comp, tmp_path):
    qat_size = comp["card"]["variants"]["qat_int8"]["size_bytes"]
    narrow = comp["card"]["variants"]["channel_pruned_qat_int8"]["size_bytes"]
    assert narrow < qat_size
    mcu = _profile(tmp_path, "cortex_m7", name="small_flash_mcu", flash_bytes=(narrow + qat_size) // 2)
    m, rep = _run(comp, tmp_path, [mcu, "coral_edgetpu", "rpi4"])
    r = rep["devices"]["small_flash_mcu"]
    assert r["chosen"] is not None and r["chosen"].startswith("channel_pruned_qat_int8")
    row = next(c for c in r["candidates"] if c["candidate"] == r["chosen"])
    assert row["integer_only"] and row["size_bytes"] <= (narrow + qat_size) // 2
    assert "flash" in r["reason"] and "plain QAT int8 did not (model" in r["reason"]
    skipped = {s["candidate"]: s["why"] for s in r["skipped"]}
    assert "keeps float ops" in skipped["fp32"]  # ruled out before running anything
    assert (tmp_path / "recommended" / "small_flash_mcu.tflite").is_file()
    assert (tmp_path / "report" / "small_flash_mcu.png").is_file()

    tpu = rep["devices"]["coral_edgetpu"]
    chosen = next(c for c in tpu["candidates"] if c["candidate"] == tpu["chosen"])
    assert chosen["integer_only"] and not any(c["candidate"] == "fp32" for c in tpu["candidates"])

    arm = rep["devices"]["rpi4"]
    integer_passing = [c for c in arm["candidates"] if c["verdict"] == "pass" and c["integer_only"]]
    best = max(c["accuracy"] for c in integer_passing)
    chosen = next(c for c in arm["candidates"] if c["candidate"] == arm["chosen"])
    assert chosen["integer_only"] and chosen["accuracy"] == best
    md = (tmp_path / "report" / "recommendation.md").read_text()
    assert "## small_flash_mcu" in md and "Skipped without making or running them" in md


def test_time_budget_skips_fine_tunes_and_says_so(comp, tmp_path):
    m, rep = _run(comp, tmp_path, ["rpi4"], max_minutes=1e-4)
    r = rep["devices"]["rpi4"]
    why = {s["candidate"]: s["why"] for s in r["skipped"]}
    assert "max_minutes" in why["channel_pruned_qat_int8@0.7"]
    assert m["timings"]["search_seconds"] < 300 and r["chosen"] is not None  # what was on disk still counts


def test_nothing_fits_names_the_nearest_miss_and_writes_no_model(comp, tmp_path):
    smallest = min(v["size_bytes"] for v in comp["card"]["variants"].values())
    tiny = _profile(tmp_path, "cortex_m7", name="too_small", flash_bytes=smallest // 2)
    m, rep = _run(comp, tmp_path, [tiny], channel_fractions=[])
    r = rep["devices"]["too_small"]
    assert r["chosen"] is None and r["reason"].startswith("no model fits too_small")
    assert r["nearest_miss"]["budget"] == "flash" and r["nearest_miss"]["available"] == smallest // 2
    assert m["devices_with_a_model"] == 0
    assert not (tmp_path / "recommended" / "too_small.tflite").exists()
    assert json.loads((tmp_path / "recommended" / "recommended.json").read_text()) == {}


def test_disabled_writes_a_one_line_report(tmp_path):
    from edgeqat.steps.recommend import recommend

    m = recommend(RecommendConfig(), tmp_path, tmp_path, tmp_path, None, tmp_path / "r", tmp_path / "m", prune=PruneConfig())
    assert m == {"enabled": False}
    assert "Disabled" in (tmp_path / "r" / "recommendation.md").read_text()


@pytest.mark.parametrize("value", [[1.0], [-0.1]])
def test_fractions_outside_unit_interval_are_refused(value):
    from edgeqat.config import parse_params
    from edgeqat.errors import ConfigError

    with pytest.raises(ConfigError, match="recommend.channel_fractions"):
        parse_params({"recommend": {"channel_fractions": value}})


def test_combined_channel_and_magnitude_pruning_is_a_candidate(comp, tmp_path):
    m, rep = _run(comp, tmp_path, ["rpi4"], sparsities=[0.5], channel_fractions=[0.7])
    rows = {c["candidate"]: c for c in rep["devices"]["rpi4"]["candidates"]}
    combo, narrow = rows["channel_pruned+pqat@0.7/0.5"], rows["channel_pruned_qat_int8@0.7"]
    assert combo["size_bytes"] == pytest.approx(narrow["size_bytes"], rel=0.02)  # zeros are stored: same raw size
    assert combo["integer_only"] and combo["weight_sparsity"] > 0.3 and narrow["weight_sparsity"] < 0.1


def test_ethos_u_device_is_searched_with_vela_figures(comp, tmp_path):
    m, rep = _run(comp, tmp_path, ["ethos_u55_128"], channel_fractions=[])
    r = rep["devices"]["ethos_u55_128"]
    assert r["chosen"] is not None, r
    chosen = next(c for c in r["candidates"] if c["candidate"] == r["chosen"])
    assert chosen["integer_only"] and chosen["verdict"] == "pass" and 0 < chosen["latency_ms_estimate"] < 20


def test_the_recommend_command_prints_a_table_or_json(comp, tmp_path):
    from typer.testing import CliRunner

    from edgeqat.adapters.cli.app import app

    smallest = min(v["size_bytes"] for v in comp["card"]["variants"].values())
    tiny = _profile(tmp_path, "cortex_m7", name="too_small", flash_bytes=smallest // 2)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"recommend": {"sparsities": [], "channel_fractions": [], "latency_runs": 3},
                                      "prune": TINY_PRUNE, "validate": {"emulate": False}}))
    d = comp["dir"]
    args = ["recommend", "-d", tiny, "-d", "rpi4", "--params", str(params), "--data", str(comp["prepared"]),
            "--models", str(d / "tflite"), "--fp32", str(d / "fp32.keras"), "--qat", str(d / "qat.h5"),
            "--out", str(tmp_path / "recommended"), "--report", str(tmp_path / "report")]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    assert res.exit_code == 1, res.output  # a device got no model
    assert re.search(r"^too_small +NO MODEL FITS", res.stdout, re.M), res.stdout
    assert re.search(r"^rpi4 +\S+ +0\.\d{4} ", res.stdout, re.M), res.stdout
    assert "\n  too_small: no model fits too_small: the closest" in res.stdout  # the reasons, under the table
    assert max(len(line) for line in res.stdout.splitlines()) <= 100
    assert re.search(r"^\[edgeqat\] recommend rpi4 \d+/\d+: ", res.stderr, re.M)  # one line per candidate
    res = CliRunner().invoke(app, [*args, "--json"])
    rec = json.loads(res.stdout)
    assert rec["devices"]["too_small"]["chosen"] is None and rec["devices"]["rpi4"]["chosen"]


def test_ethos_u_flash_budget_plain_qat_misses_gets_a_pruned_or_clustered_model(comp, tmp_path):
    """Ranked by each device's own size: on an Ethos-U, Vela's encoding of the zeros and clusters
    fits a flash that plain QAT overflows; on a TFLM device whose flash is just below the smallest
    of their flatbuffers none fits, since the flatbuffer stores every weight (the clustered ones
    are smaller only by the per-channel scales they do without)."""
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.storage import stored_size

    tfl, card = comp["dir"] / "tflite", comp["card"]["variants"]
    npu = resolve_profiles(["ethos_u55_128"])[0]
    shrunk = ("pqat_int8", "cqat_int8", "pcqat_int8")
    flash = {v: stored_size(tfl / f"{v}.tflite", npu)["bytes"] for v in ("qat_int8", *shrunk)}
    budget = (min(flash[v] for v in shrunk) + flash["qat_int8"]) // 2
    raw = min(card[v]["size_bytes"] for v in ("qat_int8", *shrunk))
    assert raw > budget  # by the flatbuffer, none would fit
    small_npu = _profile(tmp_path, "ethos_u55_128", name="small_flash_npu", flash_bytes=budget)
    mcu = _profile(tmp_path, "cortex_m7", name="qat_sized_mcu", flash_bytes=raw - 1)
    m, rep = _run(comp, tmp_path, [small_npu, mcu], sparsities=[], channel_fractions=[])

    r = rep["devices"]["small_flash_npu"]
    rows = {c["candidate"]: c for c in r["candidates"]}
    assert rows["qat_int8"]["verdict"] == "fail" and "flash" in rows["qat_int8"]["misses"]
    fit_by_vela = [v for v in shrunk if rows[v]["verdict"] == "pass"]
    assert fit_by_vela, rows  # passing with a flatbuffer larger than the flash
    assert r["chosen"] in (*shrunk, "channel_pruned_qat_int8")
    chosen = rows[r["chosen"]]
    assert chosen["size_measure"] == "vela_flash" and chosen["stored_bytes"] <= budget
    assert "Vela-encoded in" in r["reason"] and "plain QAT int8 did not (Vela's plan puts" in r["reason"]
    assert (tmp_path / "recommended" / "small_flash_npu.tflite").is_file()

    t = {c["candidate"]: c for c in rep["devices"]["qat_sized_mcu"]["candidates"]}
    assert all(t[v]["verdict"] == "fail" and t[v]["reasons"][0].startswith("model ") and "> flash" in t[v]["reasons"][0]
               for v in ("qat_int8", *shrunk))
    assert rep["devices"]["qat_sized_mcu"]["chosen"] == "channel_pruned_qat_int8"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_prepared):
    """A trained tiny model's fp32 and ptq_int8 files, and a card where ptq_int8 is swapped for the
    ptq_int8 of an untrained model of the same shape: an integer candidate at chance level."""
    import shutil

    from edgeqat.config import ConvertConfig
    from edgeqat.data.shards import make_dataset
    from edgeqat.models.io import save_model
    from edgeqat.models.training import compile_classifier, fit
    from edgeqat.steps.convert import convert

    from compressed_chain import tiny_model

    d = tmp_path_factory.mktemp("trained")
    model = tiny_model()
    compile_classifier(model, 0.02)
    fit(model, make_dataset(tiny_prepared / "train", "zero_one", 16, shuffle_buffer=256, seed=0),
        make_dataset(tiny_prepared / "val", "zero_one", 16), 12)
    save_model(model, d / "fp32.keras")
    save_model(tiny_model(), d / "untrained.keras")
    convert(ConvertConfig(variants=["fp32"]), tiny_prepared, d / "fp32.keras", None, d / "tflite")
    convert(ConvertConfig(variants=["ptq_int8"]), tiny_prepared, d / "untrained.keras", None, d / "chance")
    card = json.loads((d / "tflite" / "model_card.json").read_text())
    card["variants"]["ptq_int8"] = json.loads((d / "chance" / "model_card.json").read_text())["variants"]["ptq_int8"]
    shutil.copy(d / "chance" / "ptq_int8.tflite", d / "tflite" / "ptq_int8.tflite")
    (d / "tflite" / "model_card.json").write_text(json.dumps(card))
    return d


def _litert_accuracy(path, prepared, split):
    import numpy as np

    from edgeqat.data.shards import load_split_arrays
    from edgeqat.quantization.runtime import TFLiteClassifier

    x, y = load_split_arrays(prepared / split)
    clf = TFLiteClassifier(path)
    return float(np.mean([np.argmax(clf(img)) == label for img, label in zip(x.astype("float32") / 255.0, y)]))


@pytest.mark.parametrize("budget", [0.1, 1.0])
def test_the_accuracy_budget_rejects_a_candidate_chosen_on_validation_and_reported_on_test(trained, tiny_prepared,
                                                                                          tmp_path, budget):
    """A chance-level integer candidate would win on rpi4 (integer-only first) were the budget off
    (1.0); with a real one it is rejected on the validation split and the float model is chosen.
    The choice's accuracy is reported on the test split, which the search never read."""
    from edgeqat.steps.recommend import recommend

    cfg = RecommendConfig(enabled=True, budget_accuracy_drop=budget, sparsities=[], channel_fractions=[], latency_runs=3)
    recommend(cfg, tiny_prepared, trained / "tflite", trained / "fp32.keras", None, tmp_path / "report",
              tmp_path / "out", prune=PruneConfig(**TINY_PRUNE), devices=["rpi4"], validate=NO_QEMU)
    rep = json.loads((tmp_path / "report" / "recommendation.json").read_text())
    r = rep["devices"]["rpi4"]
    rows = {c["candidate"]: c for c in r["candidates"]}
    fp32_val = _litert_accuracy(trained / "tflite" / "fp32.tflite", tiny_prepared, "val")
    chance_val = _litert_accuracy(trained / "tflite" / "ptq_int8.tflite", tiny_prepared, "val")
    assert fp32_val - chance_val > 0.1 + 1e-9, (fp32_val, chance_val)  # the premise
    # every candidate is measured on the validation split
    assert rows["fp32"]["accuracy"] == pytest.approx(fp32_val)
    assert rows["ptq_int8"]["accuracy"] == pytest.approx(chance_val)
    assert rep["splits"] == {"search": "val", "reported": "test"}
    if budget == 1.0:
        assert r["chosen"] == "ptq_int8"
        return
    assert rows["ptq_int8"]["verdict"] == "fail" and "below the reference" in rows["ptq_int8"]["reasons"][0]
    assert r["chosen"] == "fp32" and "validation split" in r["reason"]
    # the choice, validated on its device on the test split
    test_acc = _litert_accuracy(tmp_path / "out" / "rpi4.tflite", tiny_prepared, "test")
    assert r["test"]["accuracy"] == pytest.approx(test_acc) and r["test"]["split"] == "test"
    entry = json.loads((tmp_path / "out" / "recommended.json").read_text())["rpi4"]
    assert entry["accuracy"] == pytest.approx(test_acc) and entry["val_accuracy"] == pytest.approx(fp32_val)
    assert entry["validation"]["passed"] == r["test"]["passed"]
    from edgeqat.io import sha256_file

    assert entry["validation"]["sha256"] == entry["sha256"] == sha256_file(tmp_path / "out" / "rpi4.tflite")
    assert entry["outputs"] == "logits"  # the card facts of the chosen file, for the served model
    md = (tmp_path / "report" / "recommendation.md").read_text()
    assert "ranked on the **validation** split" in md and "On the test split: accuracy" in md


def _ranked(rows, measured):
    return [r["candidate"] for r in sorted(rows, key=rank_key(measured))]


def test_rank_key_puts_measured_speed_before_size_and_estimates_size_first():
    """Synthetic rows where the fastest is not the smallest: a device that is really there ranks
    equally accurate integer models by measured latency, an estimated one by size."""
    def row(name, acc, size, ms, integer=True, stored=None):
        return {"candidate": name, "integer_only": integer, "accuracy": acc, "size_bytes": size,
                "stored_bytes": stored, "latency_ms": ms}
    rows = [row("small_slow", 0.9, 100, 2.0), row("big_fast", 0.9, 200, 1.0), row("float_best", 0.95, 50, 0.5, False),
            row("less_accurate_tiny", 0.8, 10, 0.1), row("unknown_speed", 0.9, 90, None),
            row("vela_encoded_small", 0.9, 300, 3.0, stored=80)]
    assert _ranked(rows, measured=True) == ["big_fast", "small_slow", "vela_encoded_small", "unknown_speed",
                                            "less_accurate_tiny", "float_best"]
    assert _ranked(rows, measured=False) == ["vela_encoded_small", "unknown_speed", "small_slow", "big_fast",
                                             "less_accurate_tiny", "float_best"]
    # an estimate (no measured latency) ranks on latency_ms_estimate as the speed
    est = [{**row("a", 0.9, 100, None), "latency_ms_estimate": 3.0}, {**row("b", 0.9, 100, None), "latency_ms_estimate": 1.0}]
    for r in est:
        del r["latency_ms"]
    assert _ranked(est, measured=False) == ["b", "a"]


def test_a_measured_device_ranks_candidates_on_measured_latency(comp, tmp_path):
    """`host` is really there: every candidate is timed on it, the budget and the tie-break use
    that, the report says so, and each measurement becomes a calibration row."""
    calib = tmp_path / "measured.csv"
    from edgeqat.steps.recommend import recommend

    d = comp["dir"]
    c = RecommendConfig(enabled=True, budget_accuracy_drop=RecommendConfig().budget_accuracy_drop, sparsities=[],
                        channel_fractions=[], latency_runs=5)
    recommend(c, comp["prepared"], d / "tflite", d / "fp32.keras", d / "qat.h5", tmp_path / "report", tmp_path / "rec",
              prune=PruneConfig(**TINY_PRUNE), devices=["host"], calibration=calib)
    r = json.loads((tmp_path / "report" / "recommendation.json").read_text())["devices"]["host"]
    tried = [c for c in r["candidates"] if c["accuracy"] is not None]
    assert tried and all(c["latency_source"] == "measured" and c["latency_ms"] > 0 for c in tried)
    chosen = next(c for c in tried if c["candidate"] == r["chosen"])
    peers = [c for c in tried if c["verdict"] == "pass" and c["integer_only"] and c["accuracy"] == chosen["accuracy"]]
    assert len(peers) >= 2, peers  # a tie to break: qat_int8 and its uint8-io twin at least
    assert chosen["latency_ms"] == min(p["latency_ms"] for p in peers)  # equal accuracy: the fastest measured
    assert r["chosen"] == min((c for c in tried if c["verdict"] == "pass"), key=rank_key(measured=True))["candidate"]
    assert "measured of a 100 ms budget" in r["reason"]
    assert "(measured) |" in (tmp_path / "report" / "recommendation.md").read_text()
    assert len(calib.read_text().splitlines()) == 1 + len(tried)
