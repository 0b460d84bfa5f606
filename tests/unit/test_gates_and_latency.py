"""The registry's gate as one text (a required device, or chance level), the chance warning,
and the host latency committed with the results (kept while the models stay the same)."""

from __future__ import annotations

import json

import pytest

from edgeqat.lifecycle.run_gate import chance_failure, chance_warning, registry_gate
from edgeqat.reporting.tables import summary_intro, summary_markdown, with_latency
from edgeqat.workspace.timings import HOST_LATENCY, host_latency_record, record_label
from edgeqat.workspace.timings import latest_latency as _latest_latency


def summary(acc: dict[str, float], rate: float = 0.34, **extra) -> dict:
    return {"num_test": 150, "class_names": ["a", "b", "c"], "majority_class": "b", "majority_rate": rate,
            "variants": {n: {"accuracy": a} for n, a in acc.items()}, **extra}


@pytest.mark.parametrize("accuracy, margin, fails", [
    (0.34, 0.1, True),    # exactly the majority-class rate: learned nothing
    (0.43, 0.1, True),    # above it, but not by the margin
    (0.44, 0.1, False),   # by the margin (the boundary passes)
    (0.95, 0.1, False),
    (0.30, 0.0, False),   # margin 0: no check
])
def test_chance_failure_needs_the_margin_over_the_majority_rate(accuracy, margin, fails):
    text = chance_failure(summary({"qat_int8": accuracy}), "qat_int8", margin)
    assert bool(text) is fails
    if fails:
        assert "'b'" in text and "0.3400" in text and "register.chance_margin" in text and f"{accuracy:.4f}" in text


def test_a_summary_without_the_majority_record_is_not_judged():
    s = summary({"qat_int8": 0.1})
    del s["majority_rate"]
    assert chance_failure(s, "qat_int8", 0.1) == "" and registry_gate(s, "qat_int8", 0.1) == ""


def test_the_warning_names_the_registered_variant_and_the_others_at_chance():
    s = summary({"fp32": 0.35, "ptq_int8": 0.9, "qat_int8": 0.33})
    w = chance_warning(s, "qat_int8", 0.1)
    assert w.startswith("WARNING: chance level: qat_int8 accuracy 0.3300") and "not registered" in w
    assert w.endswith("Also at chance level: fp32")
    assert chance_warning(s, "ptq_int8", 0.1) == ""  # the registered variant is fine: no warning


def test_registry_gate_joins_a_failed_device_and_chance_level():
    s = summary({"qat_int8": 0.3}, validation_passed=False, required_devices=["cortex_m7"], validated_model="qat_int8",
                devices={"cortex_m7": {"passed": False, "reasons": ["latency 386 ms > 200 ms"]}})
    gate = registry_gate(s, "qat_int8", 0.1)
    assert "cortex_m7" in gate and "386 ms" in gate and "validate.required_devices" in gate and "chance" in gate
    assert registry_gate({**s, "validation_passed": True}, "qat_int8", 0.1).startswith("qat_int8 accuracy 0.3000")
    assert registry_gate({**s, "validation_passed": True}, "qat_int8", 0.0) == ""


def test_the_intro_names_the_majority_rate():
    assert "its most common class, 'b', is 0.3400 of it" in summary_intro(summary({"fp32": 0.9}))


# --- host latency kept with the results ------------------------------------------------------

MEASURED = {"host": "x86_64 Linux", "num_threads": 1, "fp32": {"latency_p50_ms": 0.12, "latency_p90_ms": 0.2, "speedup": 1.0},
            "qat_int8": {"latency_p50_ms": 0.15, "latency_p90_ms": 0.3, "speedup": 0.8}}
SETTINGS = {"num_threads": 1, "latency_runs": 200, "warmup_runs": 10}
SHAS = {"fp32": "a" * 64, "qat_int8": "b" * 64}


def _remeasured(factor: float) -> dict:
    return {**MEASURED, **{n: {k: v * factor for k, v in MEASURED[n].items()} for n in SHAS}}


def test_the_committed_latency_stands_while_the_same_models_are_measured_the_same_way(tmp_path):
    path = tmp_path / "host_latency.json"
    first = host_latency_record(MEASURED, SHAS, SETTINGS, path)
    assert first["qat_int8"]["sha256"] == "b" * 64 and first["settings"] == SETTINGS
    path.write_text(json.dumps(first))
    # the same files measured again (a forced re-run, another machine): other figures, same record
    assert host_latency_record(_remeasured(1.7), SHAS, SETTINGS, path) == first
    # a changed model, a variant more, or other settings: this run's figures
    assert host_latency_record(_remeasured(2.0), {**SHAS, "qat_int8": "c" * 64}, SETTINGS, path)["qat_int8"]["latency_p50_ms"] == 0.3
    more = host_latency_record({**_remeasured(2.0), "ptq_int8": {"latency_p50_ms": 1.0}}, {**SHAS, "ptq_int8": "d" * 64},
                               SETTINGS, path)
    assert more["fp32"]["latency_p50_ms"] == pytest.approx(0.24)
    assert host_latency_record(_remeasured(2.0), SHAS, {**SETTINGS, "num_threads": 2}, path)["fp32"]["latency_p50_ms"] == 0.24
    path.write_text("{not json")  # damaged: measured again, never an error
    assert host_latency_record(MEASURED, SHAS, SETTINGS, path) == first


def test_the_table_takes_this_clones_timings_else_the_committed_record(tmp_path):
    def latest_latency(root):
        from edgeqat.workspace.stages import Workspace

        ws = Workspace(root)
        return _latest_latency(ws.path("evaluate_timings"), ws.path("host_latency"))

    assert latest_latency(tmp_path) is None
    (tmp_path / "reports").mkdir()
    (tmp_path / HOST_LATENCY).write_text(json.dumps(host_latency_record(MEASURED, SHAS, SETTINGS, None)))
    committed = latest_latency(tmp_path)
    assert committed["source"] == HOST_LATENCY
    shown = with_latency(summary({"fp32": 0.9, "qat_int8": 0.9}), committed)
    assert shown["variants"]["qat_int8"]["latency_p50_ms"] == 0.15
    assert f"from {HOST_LATENCY}, measured when these models were built" in summary_intro(shown)
    (tmp_path / "logs" / "timings").mkdir(parents=True)
    (tmp_path / "logs" / "timings" / "evaluate.json").write_text(json.dumps(
        {**_remeasured(3.0), "stage": "evaluate", "started_at": "2026-01-01T00:00:00+00:00"}))
    assert latest_latency(tmp_path)["fp32"]["latency_p50_ms"] == pytest.approx(0.36)  # this clone's own run


def test_a_committed_table_without_latency_points_to_the_record_not_to_evaluate(tmp_path):
    """summary.md leaves host latency out (it varies); once evaluate has kept its record, the note
    names the record (the same path in every clone) instead of asking for a stage that already ran."""
    table = summary({"fp32": 0.9, "qat_int8": 0.9})
    assert record_label(tmp_path / HOST_LATENCY) is None and record_label(None) is None
    assert "`edgeqat stage evaluate` measures it" in summary_markdown(table, latency_record=None)
    (tmp_path / "reports").mkdir()
    (tmp_path / HOST_LATENCY).write_text(json.dumps(host_latency_record(MEASURED, SHAS, SETTINGS, None)))
    assert record_label(tmp_path / HOST_LATENCY) == HOST_LATENCY  # not this machine's absolute path
    md = summary_markdown(table, latency_record=record_label(tmp_path / HOST_LATENCY))
    assert f"it is in `{HOST_LATENCY}`, and `edgeqat report` shows it" in md and "edgeqat stage evaluate" not in md
    assert "p50 ms" not in md  # still no latency column: the committed file stays a function of its inputs
    # the CLI's table (no backticks) with the figures at hand shows them, whatever the record
    shown = with_latency(table, {**MEASURED, "source": HOST_LATENCY})
    assert "latency = invoke() at 1 thread(s)" in summary_intro(shown, code="", latency_record=HOST_LATENCY)
