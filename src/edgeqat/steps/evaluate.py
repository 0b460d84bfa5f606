"""evaluate: every .tflite through LiteRT on the test split -> reports/evaluation.{json,md}.

Accuracy is measured through the interpreter, not Keras, since the interpreter is what
ships; agreement is top-1 agreement with the FP32 Keras model on the same images.
"""

from __future__ import annotations

import gzip
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgeqat.config import EvaluateConfig
from edgeqat.data.shards import iter_shards, load_meta
from edgeqat.data.transform import normalize
from edgeqat.errors import ModelError
from edgeqat.io import CARD_NAME, log, read_json, sha256_file, variant_file, write_json, write_text
from edgeqat.progress import bar
from edgeqat.quantization.runtime import TFLiteClassifier
from edgeqat.reporting.tables import LATENCY_KEYS, summary_markdown
from edgeqat.workspace.timings import host_latency_record, record_label
from edgeqat.catalog.variants import in_order, stand_in


def _keras_predictions(fp32_model: str | Path, test_dir: Path, scheme: str, trust_code: bool) -> np.ndarray:
    from edgeqat.models.io import load_model

    model = load_model(fp32_model, trust_code=trust_code)
    preds = [np.argmax(model(normalize(x, scheme), training=False).numpy(), axis=-1) for x, _ in iter_shards(test_dir)]
    return np.concatenate(preds)


def evaluate_variant(path: Path, test_dir: Path, scheme: str, cfg: EvaluateConfig, total: int | None = None) -> dict[str, Any]:
    """``total``: the number of test images (for the progress bar)."""
    clf = TFLiteClassifier(path, cfg.num_threads)
    preds, labels, latencies = [], [], []
    with bar("images", total) as progress:
        for x, y in iter_shards(test_dir):
            xn = normalize(x, scheme)
            for img, label in zip(xn, y):
                preds.append(int(np.argmax(clf(img))))
                labels.append(int(label))
                progress.advance()
    # Latency: warm up, then time invoke() alone on real test images, cycling if needed.
    first = next(iter_shards(test_dir))[0]
    imgs = normalize(first, scheme)
    for i in range(cfg.warmup_runs):
        clf.timed_invoke(imgs[i % len(imgs)])
    latencies = [clf.timed_invoke(imgs[i % len(imgs)]) for i in range(cfg.latency_runs)]
    blob = path.read_bytes()
    return {
        "accuracy": float(np.mean(np.array(preds) == np.array(labels))),
        "size_bytes": len(blob),
        "gzip_bytes": len(gzip.compress(blob, compresslevel=9, mtime=0)),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p90_ms": float(np.percentile(latencies, 90)),
        "_preds": np.array(preds),
        "_labels": np.array(labels),
    }


def evaluate(
    cfg: EvaluateConfig,
    prepared: str | Path,
    tflite_dir: str | Path,
    fp32_model: str | Path,
    summary_json: str | Path,
    summary_md: str | Path | None = None,
    confusion_csv: str | Path | None = None,
    pareto_png: str | Path | None = None,
    host_latency_json: str | Path | None = None,
    *,
    trust_model_code: bool = False,
) -> dict[str, Any]:
    """``trust_model_code``: the run's trust decision for the FP32 model file."""
    prepared, tflite_dir = Path(prepared), Path(tflite_dir)
    meta = load_meta(prepared)
    scheme = meta["normalization"]["scheme"]
    card_file = tflite_dir / CARD_NAME
    if not card_file.is_file():
        raise ModelError(f"{tflite_dir}: no {CARD_NAME}; run the convert stage first")
    card = read_json(card_file)
    # The card is written with sorted keys: list the variants in the pipeline's order instead.
    names = in_order(card["variants"])
    headline = stand_in(cfg.headline, card)
    if headline != cfg.headline:
        log(f"evaluate: {cfg.headline} was not built (convert says why); {headline} stands in as the headline")
    for required in (cfg.reference, headline):
        if required not in names:
            raise ModelError(f"evaluate: variant {required!r} was not converted (have: {', '.join(names)})")
    test_dir = prepared / "test"
    keras_pred = _keras_predictions(fp32_model, test_dir, scheme, trust_model_code)

    variants: dict[str, dict[str, Any]] = {}
    latency: dict[str, dict[str, Any]] = {}  # host measurements: the stage's timings, not its outputs
    with bar("evaluate", total=len(names)) as progress:
        for name in names:
            progress.start(name)
            r = evaluate_variant(variant_file(tflite_dir, card, name), test_dir, scheme, cfg, meta["sizes"]["test"])
            r["agreement"] = float(np.mean(r["_preds"] == keras_pred))
            r["integer_only"] = bool(card["variants"][name]["integer_only"])
            r["weight_sparsity"] = float(card["variants"][name].get("weight_sparsity", 0.0))
            if "weight_values_per_channel" in card["variants"][name]:
                r["weight_values_per_channel"] = int(card["variants"][name]["weight_values_per_channel"])
            latency[name] = {k: r.pop(k) for k in LATENCY_KEYS}
            variants[name] = r
            progress.done(f"{name}: accuracy {r['accuracy']:.4f}, {r['size_bytes']:,} bytes, "
                          f"p50 {latency[name]['latency_p50_ms']:.3f} ms")
    ref, ref_ms = variants[cfg.reference], latency[cfg.reference]["latency_p50_ms"]
    for name, r in variants.items():
        r["accuracy_delta"] = r["accuracy"] - ref["accuracy"]
        r["size_ratio"] = r["size_bytes"] / ref["size_bytes"]
        ms = latency[name]["latency_p50_ms"]
        latency[name]["speedup"] = ref_ms / ms if ms > 0 else None

    head = variants[headline]
    # What always answering the test split's most common class scores: the chance level a model
    # must clearly beat before it is registered (register.chance_margin).
    counts = np.bincount(head["_labels"], minlength=len(meta["class_names"]))
    if confusion_csv is not None:
        cls = meta["class_names"]
        rows = ["actual,predicted"] + [f"{cls[a]},{cls[p]}" for a, p in zip(head["_labels"], head["_preds"])]
        write_text(confusion_csv, "\n".join(rows) + "\n")
    for r in variants.values():
        r.pop("_preds"), r.pop("_labels")

    summary = {
        "reference": cfg.reference,
        "headline": headline,
        "class_names": meta["class_names"],
        "num_test": meta["sizes"]["test"],
        "majority_class": meta["class_names"][int(counts.argmax())],
        "majority_rate": round(float(counts.max() / max(counts.sum(), 1)), 6),
        "num_threads": cfg.num_threads,
        "data_sha256": meta["data_sha256"],
        "variants": variants,
    }
    host = f"{platform.machine()} {platform.processor() or platform.system()}".strip()
    timings = {"host": host, "num_threads": cfg.num_threads, **latency}
    if host_latency_json is not None:  # kept with the results for a clone where DVC skips this stage
        shas = {n: sha256_file(tflite_dir / card["variants"][n]["file"]) for n in names}
        settings = {"num_threads": cfg.num_threads, "latency_runs": cfg.latency_runs, "warmup_runs": cfg.warmup_runs}
        write_json(host_latency_json, host_latency_record(timings, shas, settings, host_latency_json))
    write_json(summary_json, summary)
    if summary_md is not None:
        write_text(summary_md, summary_markdown(summary, latency_record=record_label(host_latency_json)))
    if pareto_png is not None:
        from edgeqat.reporting.plots import pareto_plot

        pareto_plot(summary, pareto_png)
    metrics = {name: {k: v for k, v in r.items() if not isinstance(v, bool)} for name, r in variants.items()}
    return {**metrics, "timings": timings}
