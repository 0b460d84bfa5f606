"""Benchmark: every Keras 3 model of issue 25's matrix through every stage, with every variant.

    python bench/keras3_matrix.py [--out bench/keras3_results.md] [--images 800] [--epochs 12]
                                  [--quick KIND.FMT,...] [--only KIND.FMT,...]

The matrix is the test suite's (tests/keras3_models.py: MATRIX x FORMATS): a Sequential, a
functional with Rescaling, the blocks model (BatchNormalization, DepthwiseConv2D,
SeparableConv2D, Add, Concatenate, Dropout, ReLU6) and a keras.applications.MobileNetV2
(include_top=False, weights=None, alpha 0.35) backbone under a logits head; softmax and logits
heads; 1 and 3 channels; each saved as .keras and as .h5. The kept files in tests/data/keras3
hold random weights (for the translation check); here Keras 3 itself (one child process,
tests/keras3_build.py) trains each model on generated brightness images (4 classes) and saves
both formats, so that accuracy means something.

Each file is then `train.from_model` of a scratch workspace that runs every stage of the table
through the stage runner (what `edgeqat stage` and DVC run): prepare, preflight, train, qat,
prune, cluster, convert, evaluate, validate, recommend, report, track and register (MLflow: a
SQLite store in the scratch folder), with `convert.variants: all` (``--quick``: the quick set
for the files named) and the shipped params otherwise, fine-tunes cut to one epoch.

Per file: the max |difference| between the translated FP32 model and Keras 3's own outputs on
32 test images; Keras 3's test accuracy; fp32 and qat_int8 accuracy through LiteRT; whether
qat_int8 is within 1 point of Keras 3's; every variant's accuracy; what register did; the stage
times. Commit, date (UTC), machine and load at start and end. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(Path(__file__).resolve().parent)]
import keras3_models as k3  # noqa: E402 - the test suite's matrix and its Keras 3 builder
import user_models as um  # noqa: E402 - its generated brightness images
from run import checks_table, commit, finish, machine  # noqa: E402

TOLERANCE = 1e-4  # the acceptance: max |difference| on 32 samples
ONE_POINT = 0.01
# One epoch per fine-tune: the files come trained, every variant starts from them.
SHORT = {"qat": {"epochs": 1, "batch_size": 32},
         "prune": {"epochs": 1, "pqat_epochs": 1, "channel_epochs": 1, "qat_epochs": 1, "batch_size": 32},
         "cluster": {"epochs": 1, "qat_epochs": 1, "batch_size": 32},
         "evaluate": {"latency_runs": 20, "warmup_runs": 2},
         "validate": {"latency_runs": 5, "emulate": False, "parity_samples": 64}}


def params_for(kind: str, channels: int, raw: Path, model: Path | None, variants: str):
    """The shipped params.yaml with this model's data and file, short fine-tunes, the variant set."""
    from edgeqat.config import parse_params

    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["prepare"].update(source="npz", path=str(raw), image_size=k3.size_of(kind), channels=channels,
                        normalize=k3.normalize_of(kind), calibration_size=64, shard_size=256)
    p["train"].update(from_model=str(model) if model else None, batch_size=32)
    for section, values in SHORT.items():
        p[section].update(values)
    p["convert"]["variants"] = variants
    return parse_params(p, "bench/keras3_matrix.py")


def every_stage(root: Path, params, label: str) -> dict:
    """Each stage of the table in ``root``, in order; a failed gate is an outcome, anything else ends it."""
    from edgeqat.adapters.runner import run_stage
    from edgeqat.errors import GateFailed
    from edgeqat.workspace.stages import STAGES

    out: dict = {"seconds": {}, "metrics": {}, "gate": "", "error": ""}
    os.environ["EDGEQAT_EXECUTION"] = os.environ["EDGEQAT_RUN_NAME"] = f"keras3-{label}"  # one MLflow run per file
    for stage in STAGES:
        t0 = time.monotonic()
        try:
            out["metrics"][stage.name] = run_stage(stage, params, root)
        except GateFailed as err:
            out["gate"] = f"{stage.name}: {err}"
        except Exception as err:  # noqa: BLE001 - a file that fails is a row, not the end of the bench
            out["error"] = f"{stage.name}: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
            traceback.print_exc()
            break
        finally:
            out["seconds"][stage.name] = round(time.monotonic() - t0, 1)
            print(f"[bench] {label}: {stage.name} {out['seconds'][stage.name]:.0f} s", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "keras3_results.md")
    ap.add_argument("--images", type=int, default=800, help="generated images per model (20 %% are its test split)")
    ap.add_argument("--epochs", type=int, default=12, help="Keras 3's own training of each model")
    ap.add_argument("--quick", default="", help="KIND.FMT,... run with convert.variants=quick instead of all")
    ap.add_argument("--only", default="", help="KIND.FMT,... only these files")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder)")
    args = ap.parse_args()
    quick = {s for s in args.quick.split(",") if s}
    only = {s for s in args.only.split(",") if s}

    from edgeqat.adapters.runner import run_stage
    from edgeqat.models.keras3 import translate_file
    from edgeqat.catalog.variants import SETS

    started, load_start, measured = dt.datetime.now(dt.timezone.utc), os.getloadavg()[0], commit()
    t_all = time.monotonic()
    work = args.keep or Path(tempfile.mkdtemp(prefix="edgeqat-keras3-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    files = [(kind, ch, head, fmt) for kind, ch, head in k3.MATRIX for fmt in k3.FORMATS
             if not only or f"{kind}{fmt}" in only]
    kinds = sorted({(kind, ch, head) for kind, ch, head, _ in files}, key=k3.MATRIX.index)

    # 1. each kind's data, prepared by the prepare stage; Keras 3 trains on its train split
    jobs = []
    for kind, ch, _ in kinds:
        d = work / kind
        d.mkdir(exist_ok=True)
        x, y = um.brightness_images(args.images, k3.size_of(kind), channels=ch, seed=1)
        np.savez(d / "raw.npz", x=x, y=y)
        run_stage("prepare", params_for(kind, ch, d / "raw.npz", None, "quick"), d)
        prepared = d / "data" / "prepared"
        test = k3.split_arrays(prepared, "test", d / "test.npz")
        np.save(d / "inputs.npy", np.load(test)["x"][:32])  # the equivalence check's 32 samples
        jobs.append({"kind": kind, "shape": [k3.size_of(kind)] * 2 + [ch], "classes": k3.CLASSES, "out": str(d),
                     "formats": list(k3.FORMATS), "train": str(k3.split_arrays(prepared, "train", d / "train.npz")),
                     "epochs": args.epochs, "lr": 0.005, "probe": str(d / "inputs.npy"), "test": str(test)})
    t_build = k3.build(jobs, work)
    print(f"[bench] Keras 3 trained {len(jobs)} models and saved {len(jobs) * len(k3.FORMATS)} files in "
          f"{t_build:.0f} s", flush=True)

    # 2. each file through every stage
    rows, variant_rows, stage_rows, checks = [], [], [], []
    for kind, ch, head, fmt in files:
        label, d = f"{kind}{fmt}", work / kind
        path, root = d / f"{kind}{fmt}", work / f"{kind}{fmt.replace('.', '_')}"
        root.mkdir(exist_ok=True)
        keras3_acc = json.loads((d / f"{kind}.json").read_text())["test_accuracy"]
        t0 = time.monotonic()
        model, _ = translate_file(path)
        t_translate = time.monotonic() - t0
        diff = k3.max_output_difference(model, d / f"{kind}.probe.npy", d / "inputs.npy")
        vset = "quick" if label in quick else "all"
        t0 = time.monotonic()
        run = every_stage(root, params_for(kind, ch, d / "raw.npz", path, vset), label)
        wall = time.monotonic() - t0
        summary_file = root / "reports" / "summary.json"
        table = json.loads(summary_file.read_text())["variants"] if summary_file.is_file() and not run["error"] else {}
        fp32, qat = (table.get(v, {}).get("accuracy") for v in ("fp32", "qat_int8"))
        within = qat is not None and qat >= keras3_acc - ONE_POINT - 1e-9
        registered = root / "logs" / "registered.json"
        outcome = (run["error"] and f"error at {run['error']}") or (run["gate"] and f"gate failed ({run['gate'][:160]})") or (
            f"version {json.loads(registered.read_text()).get('version', '?')}" if registered.is_file() else "–")
        f = (lambda v: "–" if v is None else f"{v:.4f}")
        rows.append(f"| {label} | {ch} | {head} | {diff:.2e} | {keras3_acc:.4f} | "
                    f"{f((run['metrics'].get('train') or {}).get('test_accuracy'))} | {f(fp32)} | {f(qat)} | "
                    f"{'yes' if within else 'NO'} | {vset} | {outcome} | {wall:.0f} |")
        variant_rows.append(f"| {label} | " + " | ".join(f((table.get(v) or {}).get("accuracy")) for v in SETS["all"]) + " |")
        stage_rows.append(f"| {label} | {t_translate:.1f} | " + " | ".join(
            f"{run['seconds'].get(s, 0):.0f}" if s in run["seconds"] else "–" for s in STAGE_NAMES) + " |")
        print(rows[-1], flush=True)
        ran_all = not run["error"] and set(run["seconds"]) == set(STAGE_NAMES)
        checks += [(f"{label}: every stage ran", ran_all, run["error"] or f"{len(run['seconds'])} stages"),
                   (f"{label}: max abs difference <= {TOLERANCE:g} on 32 test images", diff <= TOLERANCE, f"{diff:.2e}"),
                   (f"{label}: qat_int8 within 1 point of Keras 3", within, f"{f(qat)} vs {keras3_acc:.4f}"),
                   (f"{label}: variants built", sorted(table) == sorted(SETS[vset]), f"{len(table)} of {len(SETS[vset])}")]

    ended, load_end = dt.datetime.now(dt.timezone.utc), os.getloadavg()[0]
    n_test = json.loads((work / kinds[0][0] / "data" / "prepared" / "meta.json").read_text())["sizes"]["test"] \
        if (work / kinds[0][0] / "data" / "prepared" / "meta.json").is_file() else "?"
    lines = [
        "# edgeqat benchmark: the Keras 3 matrix through every stage",
        "",
        f"- commit: {measured}",
        f"- date: {started:%Y-%m-%d %H:%M} to {ended:%H:%M} UTC ({(time.monotonic() - t_all) / 60:.1f} min)",
        f"- machine: {machine()}",
        f"- 1-min load average: {load_start:.1f} at start, {load_end:.1f} at end (other jobs shared the cores)",
        f"- data: {args.images} generated brightness images per model (4 classes, chance 0.25), {n_test} in the test "
        f"split; 16x16 (32x32 for MobileNetV2, its smallest input); Keras 3 trained each model {args.epochs} epochs "
        f"(Adam 0.005, batch 32) in {t_build:.0f} s and saved it as .keras and .h5",
        "- stages: every stage of the table through the stage runner, shipped params.yaml except the data, "
        "`train.from_model`, one epoch per fine-tune, batch 32, `validate.emulate: false`, "
        f"`convert.variants: all` ({len(SETS['all'])} variants){'; quick set for ' + ', '.join(sorted(quick)) if quick else ''}",
        "",
        "## Per file",
        "",
        "*max abs diff*: translated tf-keras FP32 model vs Keras 3's outputs on 32 test images (the acceptance: "
        f"<= {TOLERANCE:g}). *Keras 3*: the original's own test accuracy. *translated*: the train stage's score of the "
        "translated model (Keras). *fp32*, *qat_int8*: through LiteRT. *register*: what the register stage did.",
        "",
        "| file | C | head | max abs diff | Keras 3 | translated | fp32 | qat_int8 | qat within 1 pt | variants | register | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## Every variant's accuracy (LiteRT, test split)",
        "",
        "| file | " + " | ".join(SETS["all"]) + " |",
        "|---|" + "---|" * len(SETS["all"]),
        *variant_rows,
        "",
        "## Stage seconds (wall, in one process: TensorFlow is loaded once)",
        "",
        "| file | translate | " + " | ".join(STAGE_NAMES) + " |",
        "|---|---|" + "---|" * len(STAGE_NAMES),
        *stage_rows,
        "",
        *checks_table("Checks", checks),
    ]
    return finish(args.out, lines, checks)


def _stage_names() -> list[str]:
    sys.path.insert(0, str(REPO / "src"))
    from edgeqat.workspace.stages import STAGES

    return [s.name for s in STAGES]


STAGE_NAMES = _stage_names()

if __name__ == "__main__":
    sys.exit(main())
