"""Benchmark: one weight scale per tensor against one per output channel, on the default data.

    python bench/per_tensor.py [--out bench/per_tensor_results.md] [--reuse]

1. bench/work/per_tensor/channel/: the default pipeline (``Params()``: scikit-learn's digits at
   16x16, the DS-CNN, every variant, ``convert.per_channel: true``), stage by stage as
   `dvc repro` runs them (bench/compression.py's chain): the per-channel figures.
2. bench/work/per_tensor/tensor/: the same prepared data and FP32 model with
   ``convert.per_channel: false`` and the variants fp32, ptq_int8 and qat_int8: QAT is
   retrained per tensor (BatchNorms folded, one range per kernel), then convert and evaluate.

Writes the test accuracy through LiteRT, the sizes and the weight scales each file holds (its
model card, read from the file) for both, with the commit, the dates, the machine and the 1-min
load average at start and end. The per-channel workspace is the default pipeline's, laid out as
the stage table says, so bench/recommend.py takes it as its default case. ``--reuse`` keeps an
arm whose result.json exists. Not part of the test suite; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from compression import commit, run_chain, say  # noqa: E402  (bench/compression.py)
from run import machine  # noqa: E402  (bench/run.py)

WORK = REPO / "bench" / "work" / "per_tensor"
TENSOR_VARIANTS = ["fp32", "ptq_int8", "qat_int8"]
COMPARED = ("ptq_int8", "qat_int8")


def utc() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def _arm(key: str, reuse: bool, build: Any) -> dict[str, Any]:
    """An arm's result (result.json in its workspace), built unless ``reuse`` finds one."""
    cached = WORK / key / "result.json"
    if reuse and cached.is_file():
        say(f"{key}: reusing {cached}")
        return json.loads(cached.read_text())
    shutil.rmtree(WORK / key, ignore_errors=True)
    started, load0, t = utc(), load(), time.monotonic()
    res = build(WORK / key)
    res.update(started=started, ended=utc(), wall_s=round(time.monotonic() - t, 1), commit=commit(),
               load=[load0, load()])
    res["card"] = json.loads((WORK / key / "models" / "tflite" / "model_card.json").read_text())
    from edgeqat.io import write_json

    write_json(cached, res)
    return res


def channel_arm(work: Path) -> dict[str, Any]:
    from edgeqat.config import Params

    return run_chain(Params(), work)


def tensor_arm(work: Path) -> dict[str, Any]:
    """The channel arm's prepared data and FP32 model; QAT retrained per tensor, then convert, evaluate."""
    from edgeqat.config import parse_params
    from edgeqat.workspace.stages import Workspace

    params = parse_params({"convert": {"per_channel": False, "variants": TENSOR_VARIANTS}}, "bench per_tensor")
    src, dst = Workspace(WORK / "channel"), Workspace(work)
    shutil.copytree(src.path("prepared"), dst.path("prepared"))
    dst.path("fp32_model").parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src.path("fp32_model"), dst.path("fp32_model"))
    return run_chain(params, work, ("qat", "convert", "evaluate"))


def scales(card: dict[str, Any], variant: str) -> tuple[str, str]:
    """(granularity, scales per weighted op in file order) from the card, which reads the file."""
    w = card["variants"][variant]["weights"]
    if w["granularity"] == "none":
        return "none", "float kernels"
    return w["granularity"], " / ".join(str(t["scales"]) for t in w["tensors"])


def stored_scales(key: str, variant: str) -> int:
    """Quantization scales in the file, over every tensor (weights, biases, activations)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(WORK / key / "models" / "tflite" / f"{variant}.tflite"))
    return sum(t["quantization_parameters"]["scales"].size for t in it.get_tensor_details())


def size_note(ch: dict[str, Any], te: dict[str, Any]) -> str:
    """Where qat_int8's bytes went: a scale is a float32 plus an int64 zero point (12 bytes)."""
    a, b = stored_scales("channel", "qat_int8"), stored_scales("tensor", "qat_int8")
    diff = ch["summary"]["variants"]["qat_int8"]["size_bytes"] - te["summary"]["variants"]["qat_int8"]["size_bytes"]
    return (f"Size: the per-channel qat_int8 file holds {a:,} quantization scales (kernels, their int32 biases, "
            f"activations), the per-tensor one {b:,}; each is a float32 and an int64 zero point, so ({a:,} − {b:,}) × 12 "
            f"= {(a - b) * 12:,} bytes against a size difference of {diff:,} bytes.")


def _row(label: str, res: dict[str, Any], variant: str, ref: dict[str, Any] | None) -> str:
    r = res["summary"]["variants"][variant]
    gran, per_op = scales(res["card"], variant)
    delta = "–" if ref is None else f"{r['accuracy'] - ref['summary']['variants'][variant]['accuracy']:+.4f}"
    size_ratio = "–" if ref is None else f"{r['size_bytes'] / ref['summary']['variants'][variant]['size_bytes']:.3f}×"
    return (f"| {variant} | {label} | {gran} ({per_op}) | {r['accuracy']:.4f} | {delta} | {r['size_bytes']:,} | "
            f"{size_ratio} | {r['gzip_bytes']:,} |")


def report(ch: dict[str, Any], te: dict[str, Any]) -> list[str]:
    n = ch["summary"]["num_test"]
    q_ch, q_te = ch["metrics"]["qat"], te["metrics"]["qat"]
    lines = ["# edgeqat benchmark: per-tensor against per-channel weight scales (issue 26)", "",
             f"- date: {ch['started']} to {te['ended']}", f"- machine: {machine()}",
             f"- commit: {', '.join(sorted({ch['commit'], te['commit']}))} (HEAD when each arm ran)",
             f"- 1-min load average: per-channel arm {ch['load'][0]} at start, {ch['load'][1]} at end; per-tensor arm "
             f"{te['load'][0]} at start, {te['load'][1]} at end (2 cores shared with other jobs: latencies not compared)",
             "- how: `python bench/per_tensor.py`: the default pipeline (`Params()`: scikit-learn digits 16×16, DS-CNN, "
             "every variant) stage by stage as `dvc repro` runs them; then, on the same prepared data and FP32 model, "
             "`convert.per_channel: false` with QAT retrained per tensor (BatchNorms folded), converted and evaluated "
             "the same way.", "",
             f"Test split: {n} images; accuracy through the LiteRT interpreter. Weight scales: the model card's "
             "granularity and scale count per weighted op (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, in file order), "
             "read from each .tflite.", "",
             "| variant | weights | granularity (scales per op) | test accuracy | Δ vs per-channel | size bytes | "
             "size vs per-channel | gzip bytes |",
             "|---|---|---|---|---|---|---|---|",
             _row("float (shared)", ch, "fp32", None)]
    for v in COMPARED:
        lines += [_row("per-channel", ch, v, None), _row("per-tensor", te, v, ch)]
    lines += ["", f"QAT in Keras (fake-quant), before conversion: per-channel val {q_ch['val_accuracy']:.4f} / test "
                  f"{q_ch['test_accuracy']:.4f}; per-tensor val {q_te['val_accuracy']:.4f} / test "
                  f"{q_te['test_accuracy']:.4f}.", "",
              size_note(ch, te), "",
              "## The per-channel arm: the default pipeline, every variant", "",
              "| variant | granularity | test accuracy | size bytes | gzip bytes |", "|---|---|---|---|---|"]
    from edgeqat.catalog.variants import VARIANTS

    for v in sorted(ch["summary"]["variants"], key=lambda v: VARIANTS.index(v) if v in VARIANTS else len(VARIANTS)):
        r = ch["summary"]["variants"][v]
        lines.append(f"| {v} | {scales(ch['card'], v)[0]} | {r['accuracy']:.4f} | {r['size_bytes']:,} | "
                     f"{r['gzip_bytes']:,} |")
    lines += ["", "Wall time per stage (s): per-channel " + ", ".join(f"{k} {v:.0f}" for k, v in ch["times"].items())
              + f" (total {ch['wall_s']:.0f}); per-tensor " + ", ".join(f"{k} {v:.0f}" for k, v in te["times"].items())
              + f" (total {te['wall_s']:.0f}).", "",
              "Workspaces: `bench/work/per_tensor/{channel,tensor}/` (git-ignored); bench/recommend.py's default case "
              "is the channel one."]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "per_tensor_results.md")
    ap.add_argument("--reuse", action="store_true", help="keep an arm whose result.json exists")
    args = ap.parse_args()
    os.environ.setdefault("EDGEQAT_LIVE_RUN", "0")
    ch = _arm("channel", args.reuse, channel_arm)
    te = _arm("tensor", args.reuse, tensor_arm)
    args.out.write_text("\n".join(report(ch, te)) + "\n")
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
