"""The comparison table: reports/summary.json -> Markdown, for `make demo` and `edgeqat report`
(its Pareto plot is drawn by :mod:`edgeqat.reporting.plots`)."""

from __future__ import annotations

import copy
from typing import Any

# Host latency is measured, not computed: it varies from run to run, so the evaluate stage keeps
# it in its timings file (logs/timings/evaluate.json), never in summary.json, and in
# reports/host_latency.json, committed but rewritten only when the models change (for a clone
# where DVC skips evaluate). The table shows it when one of them is at hand (`edgeqat report`,
# report.html), not in the committed summary.md, whose note points to the record instead.
LATENCY_KEYS = ("latency_p50_ms", "latency_p90_ms")
LATENCY_COLUMNS = {"latency_p50_ms", "latency_p90_ms", "speedup"}

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
    ("weight_sparsity", "sparsity"),
    ("weight_values_per_channel", "weights/channel"),
    ("integer_only", "integer-only"),
)
# The sizes the Pareto fronts are drawn over: what LiteRT/TFLM devices store, and a download.
SIZE_KEYS = (("size_bytes", "flatbuffer"), ("gzip_bytes", "gzip"))


def format_cell(key: str, v: Any) -> str:
    """One cell of the comparison table: the value of column ``key`` as the tables print it."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if key in ("size_bytes", "gzip_bytes", "weight_values_per_channel"):
        return f"{int(v):,}"
    if key == "accuracy_delta":
        return f"{v:+.4f}"
    if key == "weight_sparsity":
        return f"{v:.0%}"
    if key in ("size_ratio", "speedup"):
        return f"{v:.2f}x"
    if key.startswith("latency"):
        return f"{v:.3f}"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def ordered_variants(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The variants in the pipeline's order (summary.json stores them with sorted keys)."""
    from edgeqat.catalog.variants import in_order

    rows = summary.get("variants", {})
    return [(name, rows[name]) for name in in_order(rows)]


def with_latency(summary: dict[str, Any], evaluate_timings: dict[str, Any] | None) -> dict[str, Any]:
    """The summary with the host latency the evaluate stage measured (its timings record)."""
    if not evaluate_timings:
        return summary
    out = copy.deepcopy(summary)
    for name, row in out.get("variants", {}).items():
        measured = evaluate_timings.get(name)
        if isinstance(measured, dict):
            row.update({k: measured.get(k) for k in (*LATENCY_KEYS, "speedup")})
    out["host"] = evaluate_timings.get("host", out.get("host"))
    if evaluate_timings.get("source"):
        out["latency_source"] = evaluate_timings["source"]
    return out


def variant_table(summary: dict[str, Any]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The comparison table's (key, title) columns (latency ones only when measured) and rows."""
    timed = any(r.get("latency_p50_ms") is not None for r in summary.get("variants", {}).values())
    columns = [c for c in COLUMNS if timed or c[0] not in LATENCY_COLUMNS]
    rows = [[name if key == "variant" else format_cell(key, row.get(key)) for key, _ in columns]
            for name, row in ordered_variants(summary)]
    return columns, rows


def summary_intro(summary: dict[str, Any], code: str = "`", latency_record: str | None = None) -> str:
    """What the table measured: the test split, the runtime, the host latency's conditions.

    ``latency_record``: the host latency record kept beside a table that leaves latency out (a
    committed summary.md): the note then points there rather than to a stage that already ran."""
    timed = any(r.get("latency_p50_ms") is not None for r in summary.get("variants", {}).values())
    source = f" (from {summary['latency_source']}, measured when these models were built)" \
        if summary.get("latency_source") else ""
    if timed:
        latency = (f"latency = {code}invoke(){code} at {summary.get('num_threads', 1)} thread(s) on "
                   f"{summary.get('host', 'this host')}{source}")
    elif latency_record:
        latency = (f"host latency is kept out of this file, as it varies from run to run: it is in "
                   f"{code}{latency_record}{code}, and {code}edgeqat report{code} shows it")
    else:
        latency = f"no host latency recorded ({code}edgeqat stage evaluate{code} measures it)"
    rate = summary.get("majority_rate")
    chance = (f" (its most common class, {summary.get('majority_class', '?')!r}, is {rate:.4f} of it)"
              if rate is not None else "")
    return (f"Test split: {summary.get('num_test', '?')} images, {len(summary.get('class_names', []))} classes{chance}; "
            f"accuracy through the LiteRT interpreter; {latency}; reference = {code}{summary.get('reference', 'fp32')}{code}.")


README_COLUMNS = ("variant", "accuracy", "accuracy_delta", "size_bytes", "gzip_bytes", "weight_sparsity", "integer_only")


def results_table(summary: dict[str, Any]) -> str:
    """The README's results table: every variant of a committed summary.json, nothing typed by hand."""
    titles = dict(COLUMNS)
    lines = ["| " + " | ".join(titles[k] for k in README_COLUMNS) + " |", "|" + "---|" * len(README_COLUMNS)]
    for name, row in ordered_variants(summary):
        lines.append("| " + " | ".join(name if k == "variant" else format_cell(k, row.get(k)) for k in README_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def pareto_text(summary: dict[str, Any]) -> str:
    """The Pareto front sentences, one per size measure ('' when a variant lacks accuracy or size)."""
    vs = summary.get("variants") or {}
    return " ".join(f"Pareto front (accuracy vs {what} size, smallest first): " + ", ".join(pareto_front(summary, key)) + "."
                    for key, what in SIZE_KEYS if vs and all("accuracy" in r and key in r for r in vs.values()))


def summary_markdown(summary: dict[str, Any], latency_record: str | None = None) -> str:
    """The table as Markdown; ``latency_record`` as in :func:`summary_intro`."""
    columns, rows = variant_table(summary)
    lines = [
        f"# edgeqat summary",
        "",
        summary_intro(summary, latency_record=latency_record),
        "",
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
        *("| " + " | ".join(cells) + " |" for cells in rows),
    ]
    if pareto_text(summary):
        lines += ["", pareto_text(summary)]
    if any(r.get("weight_values_per_channel") is not None for r in summary.get("variants", {}).values()):
        lines += ["", "*weights/channel*: most distinct stored weights in one output channel of any conv/dense kernel "
                  "(weight clustering bounds it by `cluster.number_of_clusters`)."]
    if summary.get("storage"):
        lines += ["", *storage_table(summary)]
    if summary.get("devices"):
        lines += ["", *device_table(summary)]
    return "\n".join(lines) + "\n"


STORAGE_NOTE = ("Bytes by each device's own measure: LiteRT and TFLite Micro store the .tflite as it is (zeros and "
                "clustered weights cost as much as any); an Ethos-U stores what Vela compiled (its encoded weights and "
                "command stream: Vela's figure for the flash, or the DRAM, its memory mode keeps the weights in), with "
                "Vela's performance-model cycles; a download is the gzip. "
                "– : the device does not run that variant's arithmetic (int8-only targets).")


def storage_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per variant, the bytes each device stores (validate's ``storage``): one flatbuffer column for
    every LiteRT/TFLM device (they store the same file), Vela's flash and cycles per Ethos-U device."""
    storage = summary["storage"]
    devices = next(iter(storage.values()), {})
    flat = [d for d, s in devices.items() if s["measure"] == "flatbuffer"]
    vela = [d for d, s in devices.items() if s["measure"].startswith("vela")]
    head = ["variant", "gzip (download)"] + (["flatbuffer (" + ", ".join(flat) + ")"] if flat else [])
    for d in vela:
        dram = any(per[d]["measure"] == "vela_dram" for per in storage.values())
        head += [f"{d} {'DRAM' if dram else 'flash'}", f"{d} cycles"]
    rows = dict(ordered_variants(summary))
    order = list(rows)
    out = []
    for name in sorted(storage, key=lambda n: (order.index(n) if n in order else len(order), n)):
        per = storage[name]
        # the flatbuffer is the same file on every LiteRT/TFLM device: shown once, unless none runs it
        flat_bytes = next((per[d]["bytes"] for d in flat if per[d]["bytes"] is not None), None)
        cells = [name, _size((rows.get(name) or {}).get("gzip_bytes"))] + ([_size(flat_bytes)] if flat else [])
        for d in vela:
            cells += [_size(per[d]["bytes"]), _size(per[d].get("cycles"))]
        out.append(cells)
    return head, out


def storage_table(summary: dict[str, Any]) -> list[str]:
    """The storage table as Markdown lines."""
    head, rows = storage_rows(summary)
    return ["## Size each device stores", "", STORAGE_NOTE, "",
            "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _size(v: Any) -> str:
    return "–" if v is None else f"{int(v):,}"


def latency_provenance(d: dict[str, Any]) -> str:
    """Where a verdict's latency came from: measured (device, date), Vela, this host x a
    published ratio, or an estimate (its error band; extrapolated, and whether it was gated)."""
    src = str(d.get("latency_source", ""))
    if src == "measured":
        return f"measured on {d.get('latency_measured_on', 'the device')}"
    if "vela" in src:
        return "vela"
    if src.startswith("host-measured"):
        return "this host x published ratio"
    band = d.get("latency_error_band") or {}
    what = "estimate" + (f" ±{band['median_rel_error']:.0%}" if band.get("median_rel_error") is not None else "")
    if d.get("latency_extrapolated"):
        what += ", extrapolated" + ("" if d.get("latency_gated", True) else ", not gated")
    if d.get("latency_proxy"):  # another device class's figures (j1900: the Pi 4's ARM row)
        what += f"; {d['latency_proxy']}"
        x86 = d.get("x86_evidence") or {}
        if x86.get("host_p50_ms") is not None:
            what += f"; this x86 host at {x86['threads']} threads: {x86['host_p50_ms']:.3g}, unscaled"
    return what


def _latency_cell(est: Any, d: dict[str, Any]) -> str:
    """The latency the budget was checked against, and where it came from."""
    ms = d.get("latency_ms", est)
    return "–" if ms is None else f"{ms:.3g} ({latency_provenance(d)})"


def _emulation_cell(emu: dict[str, Any]) -> str:
    if emu.get("bit_exact"):
        return "bit-exact"
    if emu.get("within_tolerance", False):
        return "within parity tolerance"
    return f"mismatch (top-1 agreement {emu.get('top1_agreement', 0):.3f})"


def _qemu_skipped(why: str) -> str:
    """The cell of a QEMU run that did not happen: the one command that enables it, when that is the fix."""
    if "make arm64" in why:
        return "skipped: run `make arm64` to enable"
    return f"skipped ({why})" if why else "skipped"


DEVICE_COLUMNS = ("device", "required", "verdict", "runtime", "accuracy", "latency ms", "arena bytes", "stored bytes",
                  "QEMU aarch64", "reasons")
DEVICE_NOTE = ("Latency on the device is *measured* on it when its profile says how to reach it (`connect:`; the "
               "device and the date follow), Vela's performance model for Ethos-U (*vela*), or an *estimate* from the "
               "device's measured rows or else published figures (± its median held-out error); *extrapolated* marks "
               "an estimate for a model more than 10x outside the MACs of the models it was fitted on (*not gated* "
               "when validate.gate_on_extrapolated is false); *ARM proxy* marks an estimate fitted on another device "
               "class's published figures (j1900, an x86 PC: no published ratio to this host for the same workload exists, "
               "so it borrows the Raspberry Pi 4's ARM row), shown beside this x86 host's own unscaled time. The TFLM arena is what TFLite Micro's allocator recorded "
               "with its reference kernels on this host. Stored bytes: the flatbuffer on LiteRT/TFLM, Vela's encoded weights and "
               "command stream on Ethos-U (in flash, or DRAM for the U65 profile).")


def device_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row of DEVICE_COLUMNS per device the validated variant was checked on."""
    rows = []
    for name, d in summary["devices"].items():
        emu = d.get("emulation") or {}
        emu_txt = _emulation_cell(emu) if emu.get("ran") else ("–" if not emu else _qemu_skipped(emu.get("why") or ""))
        rows.append([
            name, "yes" if d.get("required") else "no", "PASS" if d.get("passed") else "FAIL", str(d.get("runtime", "")),
            format_cell("accuracy", d.get("accuracy")), _latency_cell(d.get("latency_ms_estimate"), d), _size(d.get("arena_bytes")),
            _size(d.get("stored_bytes", d.get("model_bytes"))), emu_txt, "; ".join(d.get("reasons") or []) or "–",
        ])
    return rows


def device_table(summary: dict[str, Any]) -> list[str]:
    """Per-device verdicts of the validated variant (the validate stage's part of the summary)."""
    return [f"## Devices: `{summary.get('validated_model', '?')}`", "", DEVICE_NOTE, "",
            "| " + " | ".join(DEVICE_COLUMNS) + " |", "|" + "|".join("---" for _ in DEVICE_COLUMNS) + "|",
            *("| " + " | ".join(row) + " |" for row in device_rows(summary))]


def pareto_front(summary: dict[str, Any], key: str = "size_bytes") -> list[str]:
    """Variants no other variant beats on both accuracy (higher) and ``key`` (smaller)."""
    vs = summary.get("variants", {})
    front = []
    for name, r in vs.items():
        dominated = any(
            o["accuracy"] >= r["accuracy"] and o[key] <= r[key]
            and (o["accuracy"] > r["accuracy"] or o[key] < r[key])
            for other, o in vs.items() if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: vs[n][key])


