"""How an execution reads in MLflow (edgeqat.lifecycle.run_layout): settings stay params, a few
measurements become metrics, named so the UI's sections put the headline and the curves first."""

from __future__ import annotations

import json
from pathlib import Path

from edgeqat.workspace import observe
from edgeqat.lifecycle.run_layout import (MAX_METRICS, curve_key, curve_points, dvc_headline, from_outputs, headline,
                                history_curves, metrics_table, summary_metrics, variant_metrics, within_budget)

REPO = Path(__file__).resolve().parents[2]
# The fine-tunes of the default pipeline (params.yaml): (stage, name the step gives its training run).
DEFAULT_FINE_TUNES = [("train", "train"), ("qat", "qat"), ("qat", "qat mixed (float: logits)"), ("prune", "prune"),
                      ("prune", "pqat"), ("prune", "channel-prune"), ("prune", "channel-prune qat"),
                      ("cluster", "cqat clustering"), ("cluster", "cqat"), ("cluster", "pcqat clustering"),
                      ("cluster", "pcqat")]


def _section(key: str) -> str:
    """What the MLflow UI groups a metric under: everything before the last '/'."""
    return key.rsplit("/", 1)[0] if "/" in key else ""


def _default_run_metrics() -> dict[str, float]:
    summary = json.loads((REPO / "reports" / "summary.json").read_text())
    evaluation = json.loads((REPO / "reports" / "evaluation.json").read_text())
    return {**variant_metrics(evaluation), **summary_metrics(summary)}


def _default_curves() -> set[str]:
    epoch = {"loss": 0.1, "accuracy": 0.9, "val_loss": 0.2, "val_accuracy": 0.8}
    keys = set()
    for stage, tune in DEFAULT_FINE_TUNES:
        keys |= set(curve_points(stage, tune, {**epoch, **({"sparsity": 0.5} if tune == "prune" else {})}))
    return keys


def test_the_default_run_has_62_metrics_of_its_own():
    """Pinned: the default pipeline's run (committed results, 11 variants, 11 devices, 11 fine-tunes) holds
    3 headline + 23 curve + 14 validation + 22 variant metrics; MLflow adds ~8 system metrics (<= 80)."""
    metrics, curves = _default_run_metrics(), _default_curves()
    kept, left = within_budget(metrics, curves)
    by_section = {}
    for k in [*kept, *curves]:
        by_section.setdefault(_section(k).split("/")[0], []).append(k)
    assert {s: len(v) for s, v in by_section.items()} == {"headline": 3, "training": 23, "validation": 14, "variants": 22}
    assert len(kept) + len(curves) == 62 and not left
    assert 62 + 8 <= 80


def test_sections_sort_headline_then_curves_then_validation_then_variants():
    keys = [*_default_run_metrics(), *_default_curves()]
    sections = sorted({_section(k) for k in keys})  # the MLflow UI orders sections alphabetically
    assert sections[0] == "headline"
    assert sections[1:5] == ["training/baseline", "training/cluster", "training/prune", "training/qat"]
    assert sections[5:] == ["validation", "variants"]


def test_settings_are_not_metrics():
    keys = set(_default_run_metrics())
    assert not [k for k in keys if any(s in k for s in ("distillation", "number_of_clusters", "per_channel",
                                                        "batchnorm_folded", "counts.", "epochs"))]


def test_budget_keeps_headline_and_curves_first():
    metrics = {f"variants/v{i}.accuracy": 0.5 for i in range(100)}
    metrics |= {"headline/accuracy": 0.9, "validation/rpi4.passed": 1.0}
    kept, left = within_budget(metrics, {f"training/train/train.c{i}" for i in range(10)})
    assert len(kept) == MAX_METRICS - 10
    assert "headline/accuracy" in kept and "validation/rpi4.passed" in kept
    assert len(left) == 102 - len(kept)


def test_history_files_give_the_keys_live_logging_uses(tmp_path):
    (tmp_path / "prune_history.csv").write_text("epoch,loss,accuracy,val_loss,val_accuracy,sparsity\n1,1.0,0.5,1.1,0.4,0.3\n"
                                               "2,0.5,0.8,0.6,0.7,0.5\n")
    curves = history_curves(tmp_path)
    assert set(curves) == set(curve_points("prune", "prune", {"loss": 1, "val_accuracy": 1, "sparsity": 1}))
    assert curves[curve_key("prune", "prune", "val_accuracy")] == [(1, 0.4), (2, 0.7)]


def test_headline_of_the_validated_model():
    summary = {"validated_model": "qat_int8", "reference": "fp32", "validation_passed": False, "num_test": 359,
               "variants": {"fp32": {"accuracy": 0.99, "size_bytes": 4096}, "qat_int8": {"accuracy": 0.97, "size_bytes": 1536}},
               "devices": {"rpi4": {"passed": True}, "cortex_m4": {"passed": False}}}
    assert headline(summary) == {"accuracy": 0.97, "accuracy_drop": 0.02, "size_kib": 1.5, "devices_passed": 1,
                                 "devices": 2, "gate_passed": 0.0}
    assert dvc_headline(summary, gate_passed=False) == {"accuracy": 0.97, "size_kib": 1.5, "devices_passed": 1,
                                                        "gate_passed": False, "test_images": 359}
    # the registry's verdict (chance level included) overrides the device gate's
    assert headline({**summary, "validation_passed": True}, gate_passed=False)["gate_passed"] == 0.0


def test_outputs_of_evaluate_and_validate_give_their_metrics(tmp_path):
    ev, su = tmp_path / "evaluation.json", tmp_path / "summary.json"
    ev.write_text(json.dumps({"variants": {"fp32": {"accuracy": 0.9, "size_bytes": 10, "gzip_bytes": 9}}}))
    su.write_text(json.dumps({"devices": {"rpi4": {"passed": True}}}))
    assert from_outputs({"evaluation": ev}) == {"variants/fp32.accuracy": 0.9, "variants/fp32.size_bytes": 10.0}
    assert from_outputs({"summary": su, "other": tmp_path / "missing.json"}) == {"validation/rpi4.passed": 1.0}


def test_the_table_holds_every_number_and_string_a_stage_wrote():
    table = metrics_table({"cluster": {"cqat": {"distillation": 0.7, "per_channel": False, "note": "x"}}},
                          {"train": {"stage": "train", "seconds": 12.5, "started_at": "t"}})
    rows = list(zip(table["stage"], table["key"], table["value"]))
    assert rows == [("cluster", "cqat.distillation", 0.7), ("cluster", "cqat.per_channel", 0.0),
                    ("cluster", "cqat.note", "x"), ("train", "timings.seconds", 12.5)]


def test_an_observer_hears_epochs_and_a_failing_one_is_dropped(capsys):
    heard = []

    def bad(*_):
        raise RuntimeError("boom")

    with observe.observing(lambda t, e, logs: heard.append((t, e, logs["loss"]))), observe.observing(bad):
        observe.epoch_end("qat", 1, {"loss": 0.5})
        observe.epoch_end("qat", 2, {"loss": 0.25})
    observe.epoch_end("qat", 3, {"loss": 0.1})  # nobody listens any more
    assert heard == [("qat", 1, 0.5), ("qat", 2, 0.25)]
    assert capsys.readouterr().err.count("live logging of qat epoch 1 stopped: RuntimeError: boom") == 1
