"""Benchmark (issue 18): weight clustering (CQAT) and pruning + clustering (PCQAT) by the size
each target stores, beside a hand-written tfmot PCQAT script.

    python bench/clustering.py [--case a|b|both] [--out bench/clustering_results.md] [--reuse]

(a) the default data and model (``Params()``: digits 16x16, DS-CNN); (b) bench/compression.py's
case (b): 28x28 IDX digits resized to 32x32, MobileNetV2 alpha=1.0. Each runs edgeqat's whole
chain in-process (``compression.run_chain``: prepare -> train -> qat -> prune -> cluster ->
convert -> evaluate), then measures every variant by each target's size: the raw flatbuffer
(LiteRT / TFLite Micro), its gzip (a download), and Vela's encoded flash and cycles for the
``ethos_u55_128`` profile (Vela 5.2.0, ``edgeqat.devices.storage``); plus the sparsity and the
distinct weights per output channel read from the .tflite.

Beside it, ``handwritten_pcqat``: what you would write by hand after tfmot's PCQAT example
(prune_low_magnitude -> strip -> sparsity-preserving cluster_weights -> strip -> quantize_apply
with Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True) -> TFLiteConverter int8),
starting from edgeqat's own FP32 checkpoint, with the same epochs and learning rates, measured
the same way. Writes the tables, the issue-18 acceptance checks on (b) (PASS / MISS, reported,
not an error), the machine, the commit and the date. Progress goes to stderr. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from compression import BN_MOMENTUM, CASE_B, _settings, commit, run_chain, say, write_idx_digits  # noqa: E402
from run import machine  # noqa: E402

WORK = REPO / "bench" / "work" / "clustering"
NPU = "ethos_u55_128"
COMPARED = ("qat_int8", "pqat_int8", "cqat_int8", "pcqat_int8")


def measure(path: Path, prepared: Path, evaluate_cfg: Any, npu: Any, vela_cache: dict) -> dict[str, Any]:
    """Accuracy (LiteRT), raw, gzip, Vela flash/cycles, sparsity and distinct weights of one .tflite."""
    from edgeqat.data.shards import load_meta
    from edgeqat.devices.storage import stored_size
    from edgeqat.quantization.inspect import weight_sparsity, weight_values
    from edgeqat.steps.evaluate import evaluate_variant

    r = evaluate_variant(path, prepared / "test", load_meta(prepared)["normalization"]["scheme"], evaluate_cfg)
    r.pop("_preds"), r.pop("_labels")
    vela = stored_size(path, npu, vela_cache)
    r.update(vela_flash_bytes=vela["bytes"], vela_cycles=vela.get("cycles"), vela_ms=vela.get("inference_ms"),
             vela_why=vela.get("why"), weight_sparsity=weight_sparsity(path)["sparsity"],
             weight_values_per_channel=(values := weight_values(path))["max_per_channel"],
             weight_values_per_tensor=values["max_per_tensor"])
    return r


def handwritten_pcqat(prepared: Path, fp32_model: Path, work: Path, params: Any, npu: Any, vela_cache: dict) -> dict[str, Any]:
    """tfmot's PCQAT example, by hand, from the same FP32 checkpoint and with the same epochs and
    learning rates as edgeqat's prune and cluster stages."""
    import numpy as np

    from edgeqat.data.shards import load_meta, load_split_arrays
    from edgeqat.data.transform import normalize
    from edgeqat.tf_compat import keras, tf, tfmot
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster

    pr, cl = params.prune, params.cluster
    work.mkdir(parents=True, exist_ok=True)
    scheme = load_meta(prepared)["normalization"]["scheme"]
    times: dict[str, float] = {}

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = load_split_arrays(prepared / split)
        return normalize(x, scheme), y

    (xtr, ytr), (xva, yva), (xte, yte) = arrays("train"), arrays("val"), arrays("test")
    keras.utils.set_random_seed(pr.seed)
    train_ds = tf.data.Dataset.from_tensor_slices((xtr, ytr)).shuffle(2048, seed=pr.seed).batch(pr.batch_size)
    val_ds = tf.data.Dataset.from_tensor_slices((xva, yva)).batch(pr.batch_size)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = keras.models.load_model(fp32_model, compile=False)

    say(f"handwritten PCQAT: prune_low_magnitude to {pr.target_sparsity:.0%} over {pr.epochs} epoch(s)")
    t = time.monotonic()
    end = math.ceil(len(xtr) / pr.batch_size) * pr.epochs
    # The example's default frequency (a pruning step every 100 training steps) never fires in
    # the few dozen steps of this small data set (4 % sparsity, measured): every end/10 steps.
    sched = tfmot.sparsity.keras.PolynomialDecay(0.0, pr.target_sparsity, begin_step=0, end_step=end,
                                                 frequency=max(1, end // 10))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=sched)
    pruned.compile(keras.optimizers.Adam(pr.learning_rate), loss, metrics=["accuracy"])
    pruned.fit(train_ds, validation_data=val_ds, epochs=pr.epochs, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    times["prune"] = round(time.monotonic() - t, 1)

    say(f"handwritten PCQAT: sparsity-preserving clustering, {cl.number_of_clusters} clusters, {cl.epochs} epoch(s)")
    t = time.monotonic()
    clustered = cluster.cluster_weights(
        stripped, number_of_clusters=cl.number_of_clusters,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS, preserve_sparsity=True)
    clustered.compile(keras.optimizers.Adam(cl.learning_rate), loss, metrics=["accuracy"])
    clustered.fit(train_ds, validation_data=val_ds, epochs=cl.epochs, verbose=0)
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    times["cluster"] = round(time.monotonic() - t, 1)

    say(f"handwritten PCQAT: PCQAT, {cl.qat_epochs} epoch(s)")
    t = time.monotonic()
    q = tfmot.quantization.keras.quantize_apply(
        tfmot.quantization.keras.quantize_annotate_model(stripped),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True))
    q.compile(keras.optimizers.Adam(cl.qat_learning_rate), loss, metrics=["accuracy"])
    q.fit(train_ds, validation_data=val_ds, epochs=cl.qat_epochs, verbose=0)
    times["pcqat"] = round(time.monotonic() - t, 1)
    keras_acc = float(q.evaluate(xte, yte, verbose=0)[1])

    t = time.monotonic()
    conv = tf.lite.TFLiteConverter.from_keras_model(q)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path = work / "pcqat_int8.tflite"
    path.write_bytes(conv.convert())
    times["convert"] = round(time.monotonic() - t, 1)
    row = measure(path, prepared, params.evaluate, npu, vela_cache)
    say(f"handwritten PCQAT: accuracy {row['accuracy']:.4f}, gzip {row['gzip_bytes']:,} B, "
        f"Vela flash {row['vela_flash_bytes']:,} B")
    return {"row": row, "times": times, "keras_test_accuracy": keras_acc}


def run_case(key: str, params: Any, work: Path) -> dict[str, Any]:
    from edgeqat.devices.profiles import resolve_profiles

    npu = resolve_profiles([NPU])[0]
    res = run_chain(params, work)
    tfl, prepared, vela_cache = work / "tflite", work / "prepared", {}
    t = time.monotonic()
    rows = {}
    for name in res["summary"]["variants"]:
        say(f"case {key}: measuring {name} (LiteRT, gzip, Vela {NPU})")
        rows[name] = measure(tfl / f"{name}.tflite", prepared, params.evaluate, npu, vela_cache)
    res["times"]["measure"] = round(time.monotonic() - t, 1)
    res["rows"] = rows
    res["vela"] = {"profile": NPU, "config": npu.vela.model_dump()}
    try:
        res["handwritten"] = handwritten_pcqat(prepared, work / "fp32.keras", work.parent / f"{key}_handwritten",
                                               params, npu, vela_cache)
    except Exception as err:  # noqa: BLE001 - report the edgeqat chain anyway
        traceback.print_exc()
        res["handwritten_error"] = f"{type(err).__name__}: {err}"
    return res


# ---------------------------------------------------------------------------------------------
# report


def _ratio(a: Any, b: Any) -> str:
    return "–" if a is None or not b else f"{a / b:.3f}×"


def acceptance(rows: dict[str, Any], n: int) -> list[tuple[str, str, bool]]:
    f, q, c, p = rows["fp32"], rows["qat_int8"], rows["cqat_int8"], rows["pcqat_int8"]
    out = [
        ("pcqat_int8 gzip ≤ 0.45 × qat_int8 gzip", f"{p['gzip_bytes'] / q['gzip_bytes']:.3f}× ({p['gzip_bytes']:,} / {q['gzip_bytes']:,} B)",
         p["gzip_bytes"] <= 0.45 * q["gzip_bytes"]),
        ("pcqat_int8 accuracy within 1 pt of fp32", f"{p['accuracy']:.4f} vs {f['accuracy']:.4f} (Δ {p['accuracy'] - f['accuracy']:+.4f})",
         p["accuracy"] >= f["accuracy"] - 0.01),
        ("cqat_int8 gzip ≤ 0.60 × qat_int8 gzip", f"{c['gzip_bytes'] / q['gzip_bytes']:.3f}× ({c['gzip_bytes']:,} / {q['gzip_bytes']:,} B)",
         c["gzip_bytes"] <= 0.60 * q["gzip_bytes"]),
        (f"pcqat_int8 Vela flash ≤ 0.50 × qat_int8 ({NPU})",
         f"{_ratio(p['vela_flash_bytes'], q['vela_flash_bytes'])} ({p['vela_flash_bytes']:,} / {q['vela_flash_bytes']:,} B); "
         f"Vela latency {p['vela_ms']:.3f} / {q['vela_ms']:.3f} ms = {_ratio(p['vela_ms'], q['vela_ms'])} "
         f"(cycles {p['vela_cycles']:,} / {q['vela_cycles']:,})",
         p["vela_flash_bytes"] <= 0.50 * q["vela_flash_bytes"]),
        (f"≤ {n} distinct weights per output channel in cqat_int8 / pcqat_int8 .tflite (conv, dense)",
         f"{c['weight_values_per_channel']} / {p['weight_values_per_channel']} (qat_int8: {q['weight_values_per_channel']})",
         max(c["weight_values_per_channel"], p["weight_values_per_channel"]) <= n),
        (f"≤ {n} distinct weights per tensor in cqat_int8 / pcqat_int8 .tflite (conv, dense)",
         f"{c['weight_values_per_tensor']} / {p['weight_values_per_tensor']} (qat_int8: {q['weight_values_per_tensor']})",
         max(c["weight_values_per_tensor"], p["weight_values_per_tensor"]) <= n),
        ("pcqat_int8 .tflite keeps the 50 % sparsity", f"{p['weight_sparsity']:.1%} (pqat_int8 {rows['pqat_int8']['weight_sparsity']:.1%})",
         p["weight_sparsity"] >= 0.45),
    ]
    return out


def _check_table(title: str, rows: list[tuple[str, str, bool]]) -> list[str]:
    out = [title, "", "| check | measured | verdict |", "|---|---|---|"]
    out += [f"| {w} | {v} | {'PASS' if ok else 'MISS'} |" for w, v, ok in rows]
    return out + ["", f"{sum(ok for *_, ok in rows)}/{len(rows)} PASS.", ""]


def _size_table(rows: dict[str, Any]) -> list[str]:
    from edgeqat.catalog.variants import in_order

    rows = {n: rows[n] for n in in_order(rows)}
    q = rows["qat_int8"]
    head = ["variant", "accuracy", "Δ vs fp32", "raw bytes", "gzip bytes", "gzip vs QAT", f"Vela flash ({NPU})",
            "flash vs QAT", "Vela cycles", "Vela ms", "host p50 ms", "sparsity", "weights/channel", "weights/tensor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    ref = rows["fp32"]["accuracy"]
    for name, r in rows.items():
        flash = r["vela_flash_bytes"]
        lines.append("| " + " | ".join([
            name, f"{r['accuracy']:.4f}", f"{r['accuracy'] - ref:+.4f}", f"{r['size_bytes']:,}", f"{r['gzip_bytes']:,}",
            _ratio(r["gzip_bytes"], q["gzip_bytes"]), "–" if flash is None else f"{flash:,}",
            _ratio(flash, q["vela_flash_bytes"]), "–" if r["vela_cycles"] is None else f"{r['vela_cycles']:,}",
            "–" if r["vela_ms"] is None else f"{r['vela_ms']:.3f}", f"{r['latency_p50_ms']:.3f}",
            f"{r['weight_sparsity']:.1%}", f"{r['weight_values_per_channel']:,}", f"{r['weight_values_per_tensor']:,}"]) + " |")
    return lines


def _case_md(key: str, title: str, res: dict[str, Any]) -> list[str]:
    rows, m = res["rows"], res["metrics"]
    lines = [f"## ({key}) {title}", "", "Settings:", "", *_settings(res)]
    p = res["params"]["cluster"]
    lines += [f"- cluster: " + ", ".join(f"{k}={v}" for k, v in p.items()), ""]
    lines += [f"- FP32 training ran {m['train']['epochs_run']} epoch(s) ({m['train']['parameters']:,} parameters)", ""]
    lines += _size_table(rows)
    lines += ["", "Vela's flash is its encoded weights and command stream (`sram_memory_used` aside); – : float "
              f"variants, which the int8-only {NPU} profile does not run. Vela's cycles and ms are its performance "
              "model; host p50 is `invoke()` on this shared x86 machine.", ""]
    cl = m.get("cluster", {})
    if cl:
        c, pc = cl["cqat"], cl["pcqat"]
        lines += [f"- CQAT: {c['clustered_layers']} Conv2D/Dense kernels clustered (unclustered: "
                  f"{', '.join(c['unclustered_layers']) or 'none'}); at most {c['max_values_per_tensor']} distinct values "
                  f"per kernel in Keras; clustered FP32 test accuracy {c['clustered_fp32_test_accuracy']:.4f}",
                  f"- PCQAT: sparsity {pc['keras_sparsity_before']:.1%} before clustering, {pc['keras_sparsity_clustered']:.1%} "
                  f"after, {pc['keras_sparsity_after_qat']:.1%} after PCQAT; clustered FP32 test accuracy "
                  f"{pc['clustered_fp32_test_accuracy']:.4f}", ""]
    steps = ("prepare", "train", "qat", "prune", "cluster", "convert", "evaluate", "measure")
    lines += ["Wall time per step (s): " + ", ".join(f"{k} {res['times'][k]:.0f}" for k in steps if k in res["times"])
              + f"; total {sum(res['times'].values()):.0f}", ""]
    hand = res.get("handwritten")
    if hand:
        h, e, q = hand["row"], rows["pcqat_int8"], rows["qat_int8"]
        lines += [f"### ({key}) hand-written tfmot PCQAT (`handwritten_pcqat`)", "",
                  "tfmot's PCQAT example by hand from edgeqat's FP32 checkpoint: `prune_low_magnitude` on the whole model "
                  f"(polynomial decay to {res['params']['prune']['target_sparsity']:.0%} of each prunable layer, "
                  f"{res['params']['prune']['epochs']} epoch(s), a pruning step every tenth of them: the example's "
                  "default of one every 100 steps never fires on this data), `strip_pruning`, `cluster_weights(preserve_sparsity=True)` "
                  f"(kmeans++), `strip_clustering`, `quantize_apply(Default8BitClusterPreserveQuantizeScheme(True))`, "
                  "`TFLiteConverter` int8; same data, epochs and learning rates, measured the same way. Ratios vs "
                  "edgeqat's qat_int8.", "",
                  "| | accuracy | raw bytes | gzip bytes | gzip vs QAT | Vela flash | flash vs QAT | Vela cycles | sparsity | weights/channel | weights/tensor |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in (("hand-written PCQAT", h), ("edgeqat pcqat_int8", e)):
            lines.append(f"| {name} | {r['accuracy']:.4f} | {r['size_bytes']:,} | {r['gzip_bytes']:,} | "
                         f"{_ratio(r['gzip_bytes'], q['gzip_bytes'])} | {r['vela_flash_bytes']:,} | "
                         f"{_ratio(r['vela_flash_bytes'], q['vela_flash_bytes'])} | {r['vela_cycles']:,} | "
                         f"{r['weight_sparsity']:.1%} | {r['weight_values_per_channel']} | {r['weight_values_per_tensor']} |")
        lines += ["", f"Hand-written Keras PCQAT test accuracy {hand['keras_test_accuracy']:.4f}; wall time (s): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in hand["times"].items()), ""]
    elif res.get("handwritten_error"):
        lines += [f"### ({key}) hand-written tfmot PCQAT", "", f"Crashed: `{res['handwritten_error']}`", ""]
    return lines


def write_report(out: Path, results: dict[str, Any], started: str) -> None:
    starts = [r["started"] for r in results.values() if r.get("started")] or [started]
    commits = sorted({r.get("commit") or commit() for r in results.values()})
    n = next(iter(results.values()))["params"]["cluster"]["number_of_clusters"]
    lines = ["# edgeqat clustering benchmark (issue 18)", "",
             f"- date: {min(starts)} (report written {dt.datetime.now().astimezone().isoformat(timespec='seconds')})",
             f"- machine: {machine()} (shared with other jobs: host latencies are noisy)",
             f"- commit: {', '.join(commits)}",
             "- how: `python bench/clustering.py --case both`, one run: edgeqat's steps in-process (prepare → train → "
             "qat → prune → cluster → convert → evaluate), then every .tflite measured by LiteRT (accuracy, host "
             f"latency), gzip -9, and Vela 5.2.0 for the `{NPU}` profile (flash, cycles); then the hand-written tfmot "
             "PCQAT script on the same prepared data.", ""]
    if "b" in results:
        lines += _check_table("## Issue-18 acceptance on (b) (MobileNetV2 α=1.0, 28×28 IDX → 32×32)",
                              acceptance(results["b"]["rows"], n))
    if "a" in results:
        lines += _case_md("a", "default data: digits 16×16, DS-CNN (`Params()` defaults)", results["a"])
        lines += _check_table("Same checks on (a), for information:", acceptance(results["a"]["rows"], n))
    if "b" in results:
        lines += _case_md("b", "28×28 IDX (scikit-learn digits upscaled 8×8 → 28×28) resized to 32×32, MobileNetV2 α=1.0",
                          results["b"])
        lines += [f"- BatchNormalization momentum {BN_MOMENTUM} in MobileNetV2 (bench/compression.py explains why).", ""]
    out.write_text("\n".join(lines).rstrip() + "\n")
    say(f"wrote {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=["a", "b", "both"], default="both")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "clustering_results.md")
    ap.add_argument("--reuse", action="store_true", help="reuse a case's result.json from an earlier run")
    args = ap.parse_args()

    from edgeqat.config import Params, parse_params
    from edgeqat.io import write_json

    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results: dict[str, Any] = {}
    for key in (["a", "b"] if args.case == "both" else [args.case]):
        work = WORK / key
        cached = work / "result.json"
        if args.reuse and cached.is_file():
            results[key] = json.loads(cached.read_text())
            say(f"case {key}: reusing {cached}")
            continue
        t = time.monotonic()
        case_start = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        if key == "a":
            params = Params()
        else:
            say(f"case b: IDX files {write_idx_digits()['files']}")
            params = parse_params(CASE_B, "bench case b")
        res = run_case(key, params, work)
        res["wall_s"] = round(time.monotonic() - t, 1)
        res["started"], res["commit"] = case_start, commit()
        write_json(cached, res)
        results[key] = res
        say(f"case {key}: done in {res['wall_s']:.0f} s")
        write_report(args.out, results, started)
    write_report(args.out, results, started)
    return 1 if any(r.get("handwritten_error") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
