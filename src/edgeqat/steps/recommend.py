"""recommend: for each device, the best deployable model among the compression strategies.

Starts from the pipeline's outputs (the converted variants, the FP32 and QAT models) and
makes more candidates only where they could help (``edgeqat.recommend``). Writes, per
device, the chosen ``.tflite`` (``<models_out>/<device>.tflite``) and its entry in
``<models_out>/recommended.json``; and in ``report_dir`` (``reports/recommendation/``) the
full candidate tables, reasons and skips (``recommendation.{json,md}``) and an
accuracy-vs-size plot per device (``<device>.png``), written by
:mod:`edgeqat.reporting.recommendation`. A device where nothing fits gets no model, and the
report names the nearest miss.

Choose on validation, report on test: the search measures, budgets and ranks every candidate
on the **validation** split, so the test split plays no part in the choice. The chosen file is
then validated on its device as the validate stage does (the **test** split, the device's
runtime, QEMU where ``validate.emulate``): that verdict, and the test accuracy it measured, are
what ``recommended.json`` and the report give for the choice, and what register tags the
per-device model version with.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from edgeqat.config import PruneConfig, RecommendConfig, ValidateConfig
from edgeqat.devices.profiles import resolve_profiles
from edgeqat.errors import ModelError
from edgeqat.io import CARD_NAME, atomic_path, log, sha256_file, write_json
from edgeqat.progress import bar
from edgeqat.models.absent import absent
from edgeqat.models.exported import WHY as EXPORT_WHY, is_packed
from edgeqat.recommend.candidates import Sources, existing, generated
from edgeqat.recommend.search import Clock, recommend_for_device
from edgeqat.devices.validate import verdict_line
from edgeqat.reporting.recommendation import write_reports


def recommend(
    cfg: RecommendConfig,
    prepared: str | Path,
    tflite_dir: str | Path,
    fp32_model: str | Path,
    qat_model: Optional[str | Path],
    report_dir: str | Path,
    models_out: Optional[str | Path] = None,
    *,
    prune: PruneConfig,
    validate: Optional[ValidateConfig] = None,
    devices: Optional[list[str]] = None,
    profiles_dir: Optional[str | Path] = None,
    force: bool = False,
    calibration: Optional[str | Path] = None,
    per_channel: bool = True,
    trust_model_code: bool = False,
) -> dict[str, Any]:
    """``prune``: how candidates are fine-tuned; ``validate``: its ``profiles_dir`` (unless
    ``profiles_dir`` is given) and how the chosen model is validated (emulation, TFLM parity
    samples, extrapolated estimates); ``force``: run even when ``recommend.enabled`` is false (the
    CLI command); ``calibration``: the measured-rows file (default: the profiles folder's
    measured.csv, else devices/measured.csv): candidates measured on a device add their rows;
    ``per_channel`` (``convert.per_channel``): the weight scales of the candidates it makes;
    ``trust_model_code``: the run's trust decision for the model files it reads."""
    if profiles_dir is None and validate is not None:
        profiles_dir = validate.profiles_dir
    if not (cfg.enabled or force):
        write_reports(report_dir, {"enabled": False, "devices": {}})
        if models_out is not None:
            with atomic_path(models_out, is_dir=True) as tmp:
                write_json(tmp / "recommended.json", {})
        return {"enabled": False}
    if qat_model is not None and (not Path(qat_model).is_file() or absent(qat_model) is not None):
        qat_model = None  # not built this run (edgeqat.models.absent)
    tflite_dir = Path(tflite_dir)
    if not (tflite_dir / CARD_NAME).is_file():
        raise ModelError(f"{tflite_dir}: no {CARD_NAME}; run the pipeline first (dvc repro)")
    profiles = resolve_profiles(devices or cfg.devices, extra_dir=profiles_dir)
    from edgeqat.devices.calibration import calibration_file
    from edgeqat.devices.eval_data import load_eval_data

    t0 = time.monotonic()
    search_data = load_eval_data(prepared, fp32_model, split="val", trust_code=trust_model_code)
    test_data = load_eval_data(prepared, fp32_model, split="test", trust_code=trust_model_code)
    clock = Clock(cfg.max_minutes * 60)
    target = atomic_path(models_out, is_dir=True) if models_out is not None else tempfile.TemporaryDirectory()
    with target as out_dir:
        out_dir = Path(out_dir)
        work = out_dir / ".candidates"
        work.mkdir()
        src = Sources(Path(prepared), tflite_dir, Path(fp32_model), Path(qat_model) if qat_model else None, work, prune,
                      per_channel, trust_model_code)
        ready = {c.name: c for c in existing(src)}
        if is_packed(fp32_model):  # no Keras layers to prune: the converted variants only
            log(f"recommend: {fp32_model}: no pruning candidates: {EXPORT_WHY}")
            candidates = list(ready.values())
        else:
            candidates = list(ready.values()) + generated(src, cfg.sparsities, cfg.channel_fractions, ready)
        log(f"recommend: {len(candidates)} candidate strategies for {', '.join(p.name for p in profiles)} "
            f"(at most {cfg.max_minutes:g} min)")
        cache: dict = {}
        results = {}
        with bar("recommend", total=len(profiles)) as progress:
            for p in profiles:
                progress.start(p.name)
                results[p.name] = recommend_for_device(p, candidates, search_data,
                                                       budget_accuracy_drop=cfg.budget_accuracy_drop,
                                                       clock=clock, latency_runs=cfg.latency_runs, cache=cache,
                                                       calibration=calibration or calibration_file(profiles_dir))
                progress.done(f"{p.name}: {results[p.name]['reason']}")
        chosen_cards = {}
        by_name = {c.name: c for c in candidates}
        for p in profiles:
            r = results[p.name]
            if r["chosen"]:
                dest = out_dir / f"{p.name}.tflite"
                shutil.copy(by_name[r["chosen"]].path, dest)
                r["test"] = _validate_choice(dest, p, test_data, cfg, validate,
                                             calibration or calibration_file(profiles_dir))
                chosen_cards[p.name] = _chosen_entry(dest, r)
        shutil.rmtree(work)
        if models_out is not None:
            write_json(out_dir / "recommended.json", chosen_cards)
    report = {"enabled": True, "budget_accuracy_drop": cfg.budget_accuracy_drop, "max_minutes": cfg.max_minutes,
              "splits": {"search": "val", "reported": "test"}, "devices": results}
    write_reports(report_dir, report)
    metrics = {"enabled": True, "devices_with_a_model": sum(bool(r["chosen"]) for r in results.values()),
               **{dev: {"found": bool(r["chosen"]),
                        **({"test_accuracy": r["test"]["accuracy"], "val_accuracy": _chosen_row(r)["accuracy"],
                            "passed_on_test": r["test"]["passed"]} if r["chosen"] else {})}
                  for dev, r in results.items()}}
    seconds = round(time.monotonic() - t0, 1)
    return {**metrics, "timings": {"search_seconds": seconds, "within_budget": seconds <= cfg.max_minutes * 60 + 60}}


def _chosen_row(r: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in r["candidates"] if c["candidate"] == r["chosen"])


def _validate_choice(path: Path, prof: Any, test_data: Any, cfg: RecommendConfig,
                     validate: Optional[ValidateConfig], calibration: Any) -> dict[str, Any]:
    """The chosen file on its device, as the validate stage runs it, on the test split."""
    from edgeqat.devices.validate import validate_on_device

    v = validate or ValidateConfig()
    verdict = validate_on_device(path, prof, test_data, latency_runs=cfg.latency_runs,
                                 max_accuracy_drop=cfg.budget_accuracy_drop, emulate=v.emulate,
                                 emulate_samples=v.emulate_samples, parity_samples=v.parity_samples,
                                 gate_on_extrapolated=v.gate_on_extrapolated, calibration=calibration)
    out = {k: verdict[k] for k in ("passed", "reasons", "accuracy", "reference_accuracy", "latency_ms_estimate",
                                   "latency_ms", "latency_source", "arena_bytes", "stored_bytes", "stored_measure",
                                   "latency_extrapolated", "latency_proxy")
           if k in verdict}
    if "emulation" in verdict:
        out["emulation"] = {k: verdict["emulation"][k] for k in ("ran", "why", "bit_exact") if k in verdict["emulation"]}
    out["split"] = "test"
    out["accuracy_drop"] = round(out["reference_accuracy"] - out["accuracy"], 6)
    out["sha256"] = sha256_file(path)
    log(f"recommend: {prof.name}: {path.name} on the test split: accuracy {out['accuracy']:.4f}, "
        f"{verdict_line(verdict)}")
    return out


def _chosen_entry(path: Path, r: dict[str, Any]) -> dict[str, Any]:
    """recommended.json's entry: the file, its card facts (read from it), the search's figures on
    the validation split and the test-split validation register tags the version with."""
    from edgeqat.quantization.inspect import card_facts
    from edgeqat.quantization.runtime import is_integer_only

    row = _chosen_row(r)
    return {"file": path.name, "sha256": r["test"]["sha256"], "strategy": r["chosen"], "reason": r["reason"],
            **{k: row.get(k) for k in ("size_bytes", "stored_bytes", "size_measure", "arena_bytes",
                                       "latency_ms_estimate", "latency_ms", "latency_source")},
            "val_accuracy": row.get("accuracy"), "accuracy": r["test"]["accuracy"],
            "integer_only": is_integer_only(path), **card_facts(path), "validation": r["test"]}
