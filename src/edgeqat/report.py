"""The comparison table: reports/summary.json -> Markdown, for `make demo` and `edgeqat report`."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("variant", "variant"),
    ("accuracy", "accuracy"),
    ("accuracy_delta", "Δ acc vs ref"),
    ("agreement", "agreement w/ Keras FP32"),
    ("size_bytes", "size (bytes)"),
    ("size_ratio", "size vs ref"),
    ("gzip_bytes", "gzip (bytes)"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p90_ms", "p90 ms"),
    ("speedup", "speed-up"),
    ("integer_only", "integer-only"),
)


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if key in ("size_bytes", "gzip_bytes"):
        return f"{int(v):,}"
    if key == "accuracy_delta":
        return f"{v:+.4f}"
    if key in ("size_ratio", "speedup"):
        return f"{v:.2f}x"
    if key.startswith("latency"):
        return f"{v:.3f}"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def summary_markdown(summary: dict[str, Any]) -> str:
    ref = summary.get("reference", "fp32")
    lines = [
        f"# edgeqat summary",
        "",
        f"Test split: {summary.get('num_test', '?')} images, {len(summary.get('class_names', []))} classes; "
        f"accuracy through the LiteRT interpreter; latency = `invoke()` at {summary.get('num_threads', 1)} thread(s) on "
        f"{summary.get('host', 'this host')}; reference = `{ref}`.",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for name, row in summary.get("variants", {}).items():
        cells = [name if key == "variant" else _fmt(key, row.get(key)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
