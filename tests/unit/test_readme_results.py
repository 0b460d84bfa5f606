"""The README's results table is the committed results, not figures typed by hand: read back
against reports/summary.json, and rebuilt from whatever summary a project holds."""

from __future__ import annotations

import json

import pytest

from conftest import REPO


def _table(text: str) -> dict[str, list[str]]:
    from edgeqat.adapters.generate import README_BEGIN, README_END

    block = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.strip().splitlines()[2:]]
    return {r[0]: r[1:] for r in rows}


def test_the_readme_results_table_is_the_committed_summary():
    summary = json.loads((REPO / "reports" / "summary.json").read_text())
    table = _table((REPO / "README.md").read_text())
    assert set(table) == set(summary["variants"])
    for name, row in summary["variants"].items():
        accuracy, _, size, gzip, _, integer_only = table[name]
        assert float(accuracy) == pytest.approx(row["accuracy"], abs=5e-5), name
        assert int(size.replace(",", "")) == row["size_bytes"] and int(gzip.replace(",", "")) == row["gzip_bytes"], name
        assert integer_only == ("yes" if row["integer_only"] else "no"), name


def test_generate_rebuilds_the_table_from_the_summary_and_leaves_the_rest(tmp_path):
    from edgeqat.adapters.generate import README_BEGIN, README_END, readme_with_results

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.json").write_text(json.dumps({"reference": "fp32", "variants": {
        "fp32": {"accuracy": 0.5, "accuracy_delta": 0.0, "size_bytes": 1000, "gzip_bytes": 900,
                 "weight_sparsity": 0.0, "integer_only": False},
        "qat_int8": {"accuracy": 0.4321, "accuracy_delta": -0.0679, "size_bytes": 300, "gzip_bytes": 250,
                     "weight_sparsity": 0.5, "integer_only": True}}}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{README_BEGIN}\n| stale | 0.9999 |\n{README_END}\n\nafter\n")
    text = readme_with_results(tmp_path)
    assert text.startswith("# intro\n\n") and text.endswith(f"{README_END}\n\nafter\n")
    assert _table(text)["qat_int8"] == ["0.4321", "-0.0679", "300", "250", "50%", "yes"]
    assert "0.9999" not in text
    readme.write_text("# a README without the markers\n")
    assert readme_with_results(tmp_path) is None
