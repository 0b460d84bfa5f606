"""Keras 3 models for the tests, built by Keras 3 itself in a child process (tests/keras3_build.py),
and the chain of stages they go through. The test session runs tf-keras; Keras 3 runs only
in that child and in edgeqat's own check.

The issue's matrix: (kind, channels, head) -- each saved as .keras and as .h5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BUILD = Path(__file__).with_name("keras3_build.py")
MATRIX = [("sequential", 1, "softmax"), ("rescaling", 3, "logits"), ("blocks", 1, "softmax"),
          ("mobilenetv2", 3, "logits")]
FORMATS = (".keras", ".h5")
CLASSES = 4
# Files Keras 3 wrote, kept in the repository so the fast tier needs no Keras 3 process (one
# costs 10-20 s on 2 cores): the matrix without MobileNetV2 (9 MB a file), the table's zoo and
# the refusals. `python tests/keras3_models.py` writes them again; test_keras3.py's slow tests
# build MobileNetV2 live, and test_keras3_slow.py builds and trains its models live.
GOLDEN = Path(__file__).parent / "data" / "keras3"
ZOO = [("zoo_functional", 3), ("zoo_sequential", 1)]
REFUSING = ["with_lambda", "with_custom_layer", "with_mixed_precision", "with_hard_sigmoid", "with_lora", "with_ops"]


def size_of(kind: str) -> int:
    return 32 if kind == "mobilenetv2" else 16  # MobileNetV2 takes 32x32 and up


def normalize_of(kind: str) -> str:
    return "raw" if kind == "rescaling" else "zero_one"  # the Rescaling model maps 0..255 itself


def keras3_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    return env


def build(jobs: list[dict], workdir: Path) -> float:
    """Run the Keras 3 builder on ``jobs``; returns its wall time."""
    spec = workdir / f"jobs-{time.monotonic_ns()}.json"
    spec.write_text(json.dumps(jobs))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(BUILD), str(spec)], env=keras3_env(), capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return time.monotonic() - t0


def golden_jobs(d: Path, kinds: list[tuple[str, int]] | None = None) -> list[dict]:
    """Keras 3 builder jobs: random values in every variable, outputs on seeded probe inputs."""
    if kinds is None:
        kinds = [(kind, channels) for kind, channels, _ in MATRIX if kind != "mobilenetv2"] + ZOO
    jobs = [{"kind": kind, "shape": [size_of(kind)] * 2 + [channels], "classes": CLASSES, "out": str(d),
             "perturb": True, "probe": str(probe_inputs(kind, channels, d / f"{kind}.inputs.npy"))}
            for kind, channels in kinds]
    return jobs


def refusal_jobs(d: Path) -> list[dict]:
    return [{"kind": kind, "shape": [16, 16, 1], "classes": CLASSES, "out": str(d)} for kind in REFUSING]


def probe_inputs(kind: str, channels: int, path: Path, n: int = 32) -> Path:
    """32 seeded inputs in the range the model is fed (0..255 for the Rescaling model)."""
    s = size_of(kind)
    x = np.random.default_rng(1).random((n, s, s, channels), dtype=np.float32)
    np.save(path, x * (255.0 if normalize_of(kind) == "raw" else 1.0))
    return path


def split_arrays(prepared: Path, split: str, dest: Path) -> Path:
    """A prepared split as the pipeline feeds it (normalized floats), for Keras 3 to train or score on."""
    from edgeqat.data.shards import iter_shards, load_meta
    from edgeqat.data.transform import normalize

    scheme = load_meta(prepared)["normalization"]["scheme"]
    xs, ys = zip(*[(normalize(x, scheme), y) for x, y in iter_shards(prepared / split)])
    np.savez(dest, x=np.concatenate(xs).astype(np.float32), y=np.concatenate(ys).astype(np.int64))
    return dest


def max_output_difference(model, reference: Path, inputs: Path) -> float:
    ours = np.asarray(model(np.load(inputs), training=False))
    return float(np.abs(ours - np.load(reference)).max())


def run_stages(model_path: Path, prepared: Path, d: Path) -> dict:
    """train (from_model) -> qat -> convert -> evaluate -> validate on the quick variant set
    (fp32, ptq_int8, qat_int8), one QAT epoch: the slow tier stays lean. Pruning and
    clustering take the same translated FP32 model as QAT does."""
    from edgeqat.config import ConvertConfig, EvaluateConfig, QatConfig, TrainConfig, ValidateConfig
    from edgeqat.steps.convert import convert
    from edgeqat.steps.evaluate import evaluate
    from edgeqat.steps.qat import qat
    from edgeqat.steps.train import train
    from edgeqat.steps.validate import validate
    from edgeqat.catalog.variants import SETS

    variants = list(SETS["quick"])
    stages = [
        ("train", lambda: train(TrainConfig(from_model=str(model_path), batch_size=32), prepared, d / "fp32.keras")),
        ("qat", lambda: qat(QatConfig(epochs=1, batch_size=32, learning_rate=1e-4), prepared, d / "fp32.keras",
                            d / "qat.h5", variants=variants)),
        ("convert", lambda: convert(ConvertConfig(variants=variants), prepared, d / "fp32.keras", d / "qat.h5",
                                    d / "tflite")),
        ("evaluate", lambda: evaluate(EvaluateConfig(latency_runs=2, warmup_runs=1), prepared, d / "tflite",
                                      d / "fp32.keras", d / "evaluation.json", d / "evaluation.md")),
        ("validate", lambda: validate(ValidateConfig(devices=["rpi4", "cortex_m7"], required_devices=[], latency_runs=2,
                                                     emulate=False, variants=variants),
                                      prepared, d / "tflite", d / "fp32.keras", d / "evaluation.json",
                                      d / "summary.json", devices_json=d / "devices.json")),
    ]
    out: dict = {"seconds": {}}
    for name, run in stages:
        t0 = time.monotonic()
        out[name] = run()
        out["seconds"][name] = round(time.monotonic() - t0, 1)
    out["table"] = json.loads((d / "summary.json").read_text())["variants"]
    return out


if __name__ == "__main__":  # write the kept Keras 3 files again (tests/data/keras3)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for old in GOLDEN.iterdir():
        old.unlink()
    print(f"Keras 3 wrote {GOLDEN} in {build(golden_jobs(GOLDEN) + refusal_jobs(GOLDEN), GOLDEN):.0f} s")
    for spec in GOLDEN.glob("jobs-*.json"):
        spec.unlink()
