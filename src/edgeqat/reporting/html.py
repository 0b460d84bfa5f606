"""reports/report.html: the one page a person opens after a run. Self-contained (images are
embedded as data URIs, no script, no CDN): the comparison table, the Pareto plot, the training
curves, the headline variant's confusion matrix, each device's verdict with how much of its
budgets the model uses (flash, RAM or arena, latency), and the per-device recommendation.
The figures are drawn by :mod:`edgeqat.reporting.plots` and arrive here as base64 PNGs.

Everything on it is a function of the run's outputs (no wall time), so the page is the same
bytes for the same inputs, like every other committed report. Its host latency comes from
``reports/host_latency.json``, which evaluate rewrites only when a model file or the measuring
settings change (:func:`edgeqat.workspace.timings.host_latency_record`); a re-run of the same models keeps it.
"""

from __future__ import annotations

import html
from typing import Any

from edgeqat.reporting.tables import STORAGE_NOTE, latency_provenance, ordered_variants, pareto_front, storage_rows

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{padding:4px 8px;border-bottom:1px solid #e8ebf0;text-align:right}
th{background:#f4f6f9}td:first-child,th:first-child,td.l,th.l{text-align:left}tr.front td:first-child{font-weight:600}
.pass{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:600}.muted{color:#667085}
.bar{position:relative;width:160px;height:14px;background:#eef1f5;border-radius:3px;display:inline-block;vertical-align:middle}
.bar span{position:absolute;left:0;top:0;bottom:0;border-radius:3px}.ok{background:#4caf50}.warn{background:#f2a93b}.over{background:#d9534f}
.figs{display:flex;flex-wrap:wrap;gap:16px}.figs figure{margin:0}figcaption{font-size:12px;color:#667085}img{max-width:100%}
"""


def budgets(devices: dict[str, dict[str, Any]], details: dict[str, dict[str, Any]], profiles: dict[str, Any]) -> dict[str, list[dict]]:
    """Per device, each budget the model is held to: what it needs and what the device has."""
    out: dict[str, list[dict]] = {}
    for name, d in devices.items():
        prof, full = profiles.get(name), details.get(name, {})
        if prof is None:
            continue
        rows = []
        vela = full.get("vela") or {}
        flash_used = vela.get("flash_bytes") if vela.get("ran") else d.get("stored_bytes", d.get("model_bytes"))
        if prof.flash_bytes and flash_used is not None:
            rows.append({"budget": "flash" + (" (Vela-encoded)" if vela.get("ran") else ""), "used": flash_used,
                         "available": prof.flash_bytes, "unit": "bytes"})
        if d.get("arena_bytes") is not None and prof.sram_bytes:
            rows.append({"budget": "arena (TFLM)", "used": d["arena_bytes"], "available": prof.sram_bytes, "unit": "bytes"})
        elif vela.get("ran") and prof.sram_bytes and vela.get("sram_bytes") is not None:
            rows.append({"budget": "SRAM (Vela)", "used": vela["sram_bytes"], "available": prof.sram_bytes, "unit": "bytes"})
        elif prof.ram_bytes and d.get("interpreter_bytes") is not None and d.get("model_bytes") is not None:
            rows.append({"budget": "RAM (model + activations)", "used": d["model_bytes"] + d["interpreter_bytes"],
                         "available": prof.ram_bytes, "unit": "bytes"})
        ms = d.get("latency_ms", d.get("latency_ms_estimate"))
        if prof.latency_budget_ms and ms is not None:
            rows.append({"budget": f"latency ({latency_provenance(d)})", "used": ms,
                         "available": prof.latency_budget_ms, "unit": "ms"})
        out[name] = rows
    return out


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, unit: str) -> str:
    if unit == "ms":
        return f"{v:.3g} ms"
    return f"{v / 1024:,.1f} KiB" if v < 2**20 else f"{v / 2**20:,.2f} MiB"


def _bar(used: float, available: float) -> str:
    frac = used / available if available else 0.0
    cls = "ok" if frac < 0.8 else "warn" if frac <= 1.0 else "over"
    return (f'<span class="bar" title="{frac:.0%} of the budget"><span class="{cls}" '
            f'style="width:{min(frac, 1.0) * 100:.1f}%"></span></span> {frac:.0%}')


def _table(head: list[str], rows: list[list[str]], row_classes: list[str] | None = None,
           left: tuple[int, ...] = ()) -> str:
    def cell(tag: str, i: int, c: str) -> str:
        return f'<{tag} class="l">{c}</{tag}>' if i in left else f"<{tag}>{c}</{tag}>"

    out = ["<table><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>"]
    for n, r in enumerate(rows):
        cls = f' class="{row_classes[n]}"' if row_classes and row_classes[n] else ""
        out.append(f"<tr{cls}>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>")
    return "\n".join(out + ["</table>"])


def render(summary: dict[str, Any], *, figures: dict[str, Any], budget_rows: dict[str, list[dict]],
           recommendation: dict[str, Any] | None, warning: str = "") -> str:
    front = set(pareto_front(summary)) if summary.get("variants") else set()
    ref = summary.get("reference", "fp32")
    timed = any(r.get("latency_p50_ms") is not None for r in (summary.get("variants") or {}).values())
    vrows, vcls = [], []
    for name, r in ordered_variants(summary):
        p50 = [] if not timed else ["–" if r.get("latency_p50_ms") is None else f"{r['latency_p50_ms']:.3f}"]
        vrows.append([_e(name), f"{r.get('accuracy', 0):.4f}", f"{r.get('accuracy_delta', 0):+.4f}",
                      f"{r.get('size_bytes', 0):,}", f"{r.get('size_ratio', 0):.2f}x", f"{r.get('gzip_bytes', 0):,}",
                      *p50, f"{r.get('weight_sparsity', 0):.0%}",
                      "–" if r.get("weight_values_per_channel") is None else f"{r['weight_values_per_channel']:,}",
                      "yes" if r.get("integer_only") else "no"])
        vcls.append("front" if name in front else "")
    latency = (f"host p50 ms: <code>invoke()</code> at {summary.get('num_threads', 1)} thread(s) on "
               f"{_e(summary.get('host', '?'))}, measured when these models were built" if timed else
               "no host latency recorded (<code>edgeqat stage evaluate</code> measures it)")
    rate = summary.get("majority_rate")
    chance = (f"; always answering its most common class (<code>{_e(summary.get('majority_class', '?'))}</code>) "
              f"scores {rate:.4f}" if rate is not None else "")
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>edgeqat report</title>", f"<style>{STYLE}</style></head><body>",
        "<h1>edgeqat report</h1>",
        *([f"<p class=\"fail\">{_e(warning)}</p>"] if warning else []),
        f"<p class=\"muted\">Test split: {summary.get('num_test', '?')} images, {len(summary.get('class_names', []))} "
        f"classes{chance}; accuracy through the LiteRT interpreter; reference <code>{_e(ref)}</code>; data sha256 "
        f"<code>{_e(str(summary.get('data_sha256', '?'))[:12])}</code>; {latency}.</p>",
        "<h2>Variants</h2>",
        _table(["variant", "accuracy", "Δ vs ref", "size (bytes)", "size vs ref", "gzip (bytes)",
                *(["p50 ms (host)"] if timed else []), "sparsity", "weights/channel", "integer-only"], vrows, vcls),
        "<p class=\"muted\">Bold: on the Pareto front of accuracy vs flatbuffer size. <i>weights/channel</i>: most "
        "distinct stored weights in one output channel of any conv/dense kernel (clustering bounds it).</p>",
    ]
    if summary.get("storage"):
        head, srows = storage_rows(summary)
        parts += ["<h2>Size each device stores</h2>", _table(head, srows), f"<p class=\"muted\">{_e(STORAGE_NOTE)}</p>"]
    figs = [(k, cap) for k, cap in (("pareto", "Accuracy vs flatbuffer and gzip size (Pareto fronts in red)"), ("curves", "Training curves"),
                                    ("confusion", "Confusion matrix of the headline variant"),
                                    ("devices", "Device budgets used")) if figures.get(k)]
    if figs:
        parts.append("<h2>Plots</h2><div class=\"figs\">")
        for key, cap in figs:
            parts.append(f"<figure><img alt=\"{_e(cap)}\" src=\"data:image/png;base64,{figures[key]}\">"
                         f"<figcaption>{_e(cap)}</figcaption></figure>")
        parts.append("</div>")
    devices = summary.get("devices") or {}
    if devices:
        parts.append(f"<h2>Devices: <code>{_e(summary.get('validated_model', '?'))}</code></h2>")
        drows = []
        for name, d in devices.items():
            verdict = '<span class="pass">PASS</span>' if d.get("passed") else '<span class="fail">FAIL</span>'
            bars = "<br>".join(f"{_e(b['budget'])}: {_bar(b['used'], b['available'])} "
                               f"<span class=\"muted\">{_num(b['used'], b['unit'])} of {_num(b['available'], b['unit'])}</span>"
                               for b in budget_rows.get(name, [])) or "–"
            acc = d.get("accuracy")
            drows.append([_e(name) + (" <span class=\"muted\">(required)</span>" if d.get("required") else ""), verdict,
                          _e(d.get("runtime", "")), "–" if acc is None else f"{acc:.4f}", bars,
                          _e("; ".join(d.get("reasons") or [])) or "–"])
        parts.append(_table(["device", "verdict", "runtime", "accuracy", "budget used", "reasons"], drows, left=(4, 5)))
    if recommendation and recommendation.get("enabled"):
        parts.append("<h2>Recommendation per device</h2>")
        rrows = [[_e(dev), _e(r.get("chosen") or "no model fits"),
                  f"{r['test']['accuracy']:.4f}" if r.get("test") else "–", _e(r.get("reason", ""))]
                 for dev, r in recommendation.get("devices", {}).items()]
        # chosen on the validation split; the accuracy shown is the choice's on the test split
        parts.append(_table(["device", "chosen", "test accuracy", "why (validation split)"], rrows, left=(1, 3)))
    elif recommendation is not None:
        parts.append("<h2>Recommendation per device</h2><p class=\"muted\">Off (<code>recommend.enabled: false</code>); "
                     "<code>edgeqat recommend --device ...</code> searches one.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
