"""The CI report's text (edgeqat.reporting.ci), from what a run found: no git, dvc or MLflow
(tests/integration/test_team_workflow.py checks the report of a real CI run)."""

from __future__ import annotations

from edgeqat.lifecycle.version_tags import VersionTags
from edgeqat.reporting.ci import CiRun, ci_markdown, metrics_diff_text, versions_table


def _version(n: str, gates: bool, **devices: bool) -> dict:
    tags = {"accuracy": "0.9412", "accuracy_drop": "0.0031", "size_bytes": "110592", "gzip_bytes": "not a number",
            "gates.passed": str(gates).lower(), "devices": ",".join(devices),
            **{f"device.{d}.passed": str(ok).lower() for d, ok in devices.items()}}
    return {"version": n, "tags": VersionTags.from_tags(tags)}


def test_versions_table_lines_up_both_versions_and_every_device():
    table = versions_table(("challenger", _version("4", True, mcu=False, pi4=True)),
                           ("champion", _version("2", False, pi4=True)))
    assert table.splitlines() == [
        "| | accuracy | drop vs fp32 | size (bytes) | gzip (bytes) | gates | mcu | pi4 |",
        "|---|---|---|---|---|---|---|---|",
        "| challenger (v4) | 0.9412 | +0.0031 | 110,592 | – | yes | FAIL | PASS |",
        "| champion (v2) | 0.9412 | +0.0031 | 110,592 | – | no | – | PASS |",
    ]


def test_without_a_champion_the_table_says_how_to_promote_one():
    table = versions_table(("challenger", _version("1", True, mcu=True)), ("champion", None))
    assert "| champion | – | – | – | – | – | – |" in table
    assert table.endswith("\n\nNo champion yet: promote one with `edgeqat promote VERSION` or in the MLflow UI.")


def test_metrics_diff_section():
    table = "| Path | Metric | HEAD | workspace | Change |\n|---|---|---|---|---|\n| m.json | acc | 0.9 | 0.91 | 0.01 |"
    assert metrics_diff_text("HEAD", table, 0, "") == table
    assert metrics_diff_text("HEAD", table.rsplit("\n", 1)[0], 0, "") == "No metric changed against `HEAD`."
    assert metrics_diff_text("main", "", 255, "ERROR: unknown revision 'main'\n") == \
        "`dvc metrics diff main` failed: ERROR: unknown revision 'main'"


def test_report_names_the_run_its_gate_and_every_registered_model():
    run = CiRun(stages_run=["train", "qat"], refreshed=["data/site.dvc"], pulled=True, pushed=True, seconds=61.6,
                gate_failure="qat_int8 failed required device(s) mcu (mcu: arena too big)")
    text = ci_markdown(run, trigger="schedule", commit="ab12cd3", base="HEAD", metrics="No metric changed against `HEAD`.",
                       registered=("edgeqat-classifier", "T1"), recommended=(("edgeqat-classifier-mcu", "T2"),))
    assert text.startswith("# edgeqat CI: schedule at `ab12cd3`\n\nStages run: train, qat. Data refreshed: "
                           "data/site.dvc. DVC remote: pulled, pushed. Took 62 s.\n\n**Device gate FAILED**: qat_int8")
    assert "## Results" not in text  # no summary.json
    assert text.endswith("## Challenger vs champion: `edgeqat-classifier`\n\nT1\n\n### `edgeqat-classifier-mcu`\n\nT2\n")


def test_report_of_a_run_with_nothing_to_do_shows_the_results():
    summary = {"reference": "fp32", "num_test": 10, "class_names": ["a", "b"],
               "variants": {"fp32": {"accuracy": 0.9, "size_bytes": 4000, "gzip_bytes": 3000}}}
    text = ci_markdown(CiRun(refresh_note="no imported data"), trigger="manual", commit="?", base="HEAD",
                       metrics="M", summary=summary)
    assert "Stages run: none (everything up to date). Data refreshed: no (no imported data). DVC remote: none." in text
    assert "FAILED" not in text and "Challenger" not in text
    results = text.split("## Results\n\n", 1)[1]
    assert results.startswith("Test split: 10 images, 2 classes") and "| fp32 | 0.9000 |" in results
