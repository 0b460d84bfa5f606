"""Device validation benchmark: the latency estimator's error on held-out published figures,
the verdict of a converted model on every shipped profile, and how long validate takes per
microcontroller profile on a large split (the test split tiled to ~14,000 images).

    python bench/devices.py [--tflite models/tflite] [--data data/prepared] [--fp32 models/fp32.keras]
                            [--variant qat_int8] [--out bench/devices_results.md] [--note TEXT]

Run it after `dvc repro` (the default data and model). Not part of the timed test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import machine  # noqa: E402

from edgeqat.devices.profiles import available_profiles  # noqa: E402
from edgeqat.devices.speed import fit_speed_model, heldout_report, published_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def estimator_section() -> list[str]:
    rep = heldout_report()
    rows = published_rows()
    lines = ["## Latency estimator on held-out published figures", "",
             "Each like-with-like group of `published_latency.csv` (one device, runtime, kernel library, dtype, "
             "thread count) is fitted on its calibration rows and predicts its held-out rows (other models on the "
             "same device). Relative error = |estimate − published| / published.", "",
             "| device class | held-out points | median error | max error |", "|---|---|---|---|"]
    for cls, s in rep["by_class"].items():
        lines.append(f"| {cls} | {s['heldout_points']} | {s['median_rel_error']:.0%} | {s['max_rel_error']:.0%} |")
    lines += ["", "| held-out row | device | model | published ms | estimate ms | error |", "|---|---|---|---|---|---|"]
    for p in rep["points"]:
        lines.append(f"| {p['id']} | {p['device']} | {p['model']} | {p['published_ms']:g} | {p['estimate_ms']:.1f} | {p['rel_error']:.0%} |")
    lines += ["", "Calibration rows in the table: "
              f"{sum(r['split'] == 'calibration' for r in rows.values())}, held-out rows: "
              f"{sum(r['split'] == 'heldout' for r in rows.values())} (rows whose model has no reference workload are skipped)."]
    lines += ["", "### Fits used by the shipped profiles", "",
              "| profile | dtype | kernel library | calibration rows | ms per M MACs: dense / depthwise / fc |",
              "|---|---|---|---|---|"]
    for name, prof in available_profiles().items():
        for sm in (prof.speed_model, prof.speed_model_fp32):
            if sm is None:
                continue
            f = fit_speed_model(sm)
            r = f.ms_per_mmac
            lines.append(f"| {name} | {sm.dtype} | {sm.kernel_library} | {', '.join(f.calibration)} | "
                         f"{r['dense']:.4g} / {r['depthwise']:.4g} / {r['fc']:.4g} |")
    return lines


def _band(b: dict | None) -> str:
    if not b or not b.get("heldout_points"):
        return "–"
    near = "none within 10x of its MACs: all of the class" if "none within" in b["basis"] else "within 10x of its MACs"
    return f"median {b['median_rel_error']:.0%}, max {b['max_rel_error']:.0%} ({b['heldout_points']} models, {near})"


def verdict_section(tflite: Path, data: Path, fp32: Path, variant: str) -> list[str]:
    from edgeqat.io import read_json
    from edgeqat.devices.validate import validate_on_device
    from edgeqat.devices.eval_data import load_eval_data

    card = read_json(tflite / "model_card.json")
    model = tflite / card["variants"][variant]["file"]
    ev = load_eval_data(data, fp32)
    lines = [f"## Verdicts: `{variant}` of the default pipeline on every shipped profile", "",
             f"Model: `{model}` ({model.stat().st_size:,} bytes); test split: {len(ev.images)} images.", "",
             "| device | verdict | runtime | accuracy | agreement | latency ms (source) | estimate's held-out error | arena / SRAM bytes | host p50 ms | QEMU aarch64 | seconds | reasons |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, prof in available_profiles().items():
        t = time.monotonic()
        v = validate_on_device(model, prof, ev, latency_runs=50)
        emu = v.get("emulation") or {}
        emu_txt = ("bit-exact" if emu.get("bit_exact") else f"differs (max {emu.get('max_abs_diff')})") if emu.get("ran") \
            else (f"skipped: {emu.get('why')}" if emu else "–")
        est = v.get("latency_ms_estimate")
        lines.append("| " + " | ".join([
            name, "PASS" if v["passed"] else "FAIL", v["runtime"], f"{v.get('accuracy', float('nan')):.4f}",
            f"{v.get('agreement', float('nan')):.4f}",
            "–" if est is None else (f"{est:.3g} ({v['latency_estimate']['label']}, {v['latency_estimate']['kernel_library']}"
                                     + (", **extrapolated**" if v.get("latency_extrapolated") else "") + ")"),
            _band(v.get("latency_estimate", {}).get("error_band")),
            f"{v['arena_bytes']:,}" if v.get("arena_bytes") else
            (f"{v['sram_bytes_used']:,} (Vela)" if v.get("sram_bytes_used") is not None else "–"),
            f"{v['host_latency_ms']['p50']:.3f}" if v.get("host_latency_ms") else "–", emu_txt,
            f"{time.monotonic() - t:.1f}", "; ".join(v["reasons"]) or "–"]) + " |")
    vela = {n: p for n, p in available_profiles().items() if p.runtime == "vela"}
    if vela:
        lines += ["", "Ethos-U profiles: Vela's figures (performance model, not a measurement).", "",
                  "| device | Vela | config | cycles | ms | SRAM bytes | flash bytes | DRAM bytes | NPU ops | CPU ops |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, prof in vela.items():
            r = validate_on_device(model, prof, None)["vela"]
            if not r["ran"]:
                lines.append(f"| {name} | – | – | – | – | – | – | – | – | {r['error']} |")
                continue
            c = r["config"]
            lines.append(f"| {name} | {r['version']} | {c['accelerator_config']}, {c['system_config']}, {c['memory_mode']} | "
                         f"{r['cycles']:,} | {r['inference_ms']:.3f} | {r['sram_bytes']:,} | {r['flash_bytes']:,} | "
                         f"{r['dram_bytes']:,} | {r['npu_ops']} | {r['cpu_ops']} |")
    return lines


def mcu_timing_section(tflite: Path, data: Path, fp32: Path, variant: str, target: int = 14000) -> list[str]:
    """Seconds of validate per microcontroller profile on the test split tiled to ``target`` images:
    TFLM runs validate.parity_samples of them, LiteRT all of them once for every profile."""
    import numpy as np

    from edgeqat.devices.validate import EvalData, validate_on_device
    from edgeqat.io import read_json
    from edgeqat.devices.eval_data import load_eval_data

    model = tflite / read_json(tflite / "model_card.json")["variants"][variant]["file"]
    ev = load_eval_data(data, fp32)
    reps = max(1, round(target / len(ev.images)))
    big = EvalData(np.tile(ev.images, (reps, 1, 1, 1)), np.tile(ev.labels, reps), np.tile(ev.reference_preds, reps))
    lines = [f"## validate per microcontroller profile on {len(big.images):,} images", "",
             f"The test split tiled {reps}x. Profiles in this order share one LiteRT pass (the first pays for it).", "",
             "| profile | verdict | seconds | accuracy | TFLM parity |", "|---|---|---|---|---|"]
    for name, prof in available_profiles().items():
        if prof.runtime != "tflm":
            continue
        t = time.monotonic()
        v = validate_on_device(model, prof, big, latency_runs=50)
        par = v.get("parity")
        par_txt = "not run" if par is None else (f"{par['samples']} images, " + (
            "bit-exact" if par["bit_exact"] else f"{par['mismatched']} differ by ≤{par['max_abs_diff']}, top-1 changed {par['top1_mismatched']}"))
        acc = v.get("accuracy")
        lines.append(f"| {name} | {'PASS' if v['passed'] else 'FAIL'} | {time.monotonic() - t:.1f} | "
                     f"{'–' if acc is None else f'{acc:.4f}'} | {par_txt} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflite", type=Path, default=REPO / "models/tflite")
    ap.add_argument("--data", type=Path, default=REPO / "data/prepared")
    ap.add_argument("--fp32", type=Path, default=REPO / "models/fp32.keras")
    ap.add_argument("--variant", default="qat_int8")
    ap.add_argument("--out", type=Path, default=REPO / "bench/devices_results.md")
    ap.add_argument("--note", default="", help="A line on where the model came from (e.g. a shortened training).")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    lines = ["# edgeqat benchmark: device validation", "",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", f"- machine: {machine()}",
             f"- commit: {commit}"] + ([f"- model: {args.note}"] if args.note else []) + [""]
    lines += estimator_section() + [""]
    if (args.tflite / "model_card.json").is_file():
        lines += verdict_section(args.tflite, args.data, args.fp32, args.variant) + [""]
        lines += mcu_timing_section(args.tflite, args.data, args.fp32, args.variant)
    else:
        lines += [f"(no {args.tflite}/model_card.json: run `dvc repro` first for the verdict table)"]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
