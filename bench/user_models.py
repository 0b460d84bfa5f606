"""Users' own Keras models through every stage: the test suite's matrix
(tests/user_models.py), with each variant's accuracy written out.

    python bench/user_models.py [--out bench/user_models_results.md] [--apps]

Each model is trained briefly on small synthetic data (brightness classes, 160 images,
32 in the test split), saved in the user's format and given as train.from_model.
``--apps`` adds MobileNetV2 alpha=0.35 at 96x96x3 (whole, and include_top=False under a
user head). Not part of the timed test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(Path(__file__).resolve().parent)]
import user_models as um  # noqa: E402
from run import machine  # noqa: E402

CASES = [  # (kind, channels, file, normalize, size)
    ("sequential_input", 1, "model.keras", "zero_one", 16),
    ("sequential_input_shape", 1, "model.keras", "zero_one", 16),
    ("sequential_deferred", 3, "model.h5", "zero_one", 16),
    ("functional_softmax", 3, "savedmodel", "zero_one", 16),
    ("functional_logits", 1, "savedmodel", "zero_one", 16),
    ("softmax_layer", 1, "model.h5", "zero_one", 16),
    ("rescaling", 1, "model.keras", "raw", 16),
    ("normalization", 3, "model.keras", "zero_one", 16),
    ("nested_backbone", 3, "model.keras", "zero_one", 16),
    ("nested_sequential", 1, "model.h5", "zero_one", 16),
]
APPS = [("mobilenetv2", 3, "model.keras", "minus_one_one", 96), ("mobilenetv2_head", 3, "model.keras", "minus_one_one", 96)]
VARIANTS = um.VARIANTS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "user_models_results.md")
    ap.add_argument("--apps", action="store_true")
    args = ap.parse_args()
    rows = []
    for kind, ch, fname, norm, size in CASES + (APPS if args.apps else []):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            prepared = um.prepared_split(d, ch, norm, size=size)
            t0 = time.monotonic()
            model = um.build(kind, (size, size, ch), 4)
            um.fit_briefly(model, prepared, epochs=15 if size <= 32 else 6)
            try:
                out = um.run_chain(um.save(model, d / fname), prepared, d, variants=VARIANTS)
            except Exception as err:  # noqa: BLE001 - a failing case is a row, not the end of the bench
                rows.append(f"| {kind} | {ch} | {fname} | failed: {type(err).__name__}: {str(err)[:120]} |" + " |" * len(VARIANTS))
                continue
            acc = " | ".join(f"{out['table'][v]['accuracy']:.3f}" for v in VARIANTS)
            m7 = "PASS" if out["devices"]["cortex_m7"]["passed"] else "FAIL: " + "; ".join(out["devices"]["cortex_m7"]["reasons"])
            rows.append(f"| {kind} | {ch} | {fname} | {out['train']['test_accuracy']:.3f} | {acc} | {m7} | "
                        f"{time.monotonic() - t0:.0f} |")
            print(rows[-1], flush=True)
    head = ("| model | C | file | user's model (Keras) | " + " | ".join(VARIANTS) + " | qat_int8 on cortex_m7 | s |\n"
            "|" + "---|" * (len(VARIANTS) + 6))
    text = (f"# User-model matrix\n\n{dt.date.today()} on {machine()}. Accuracy on the test split (32 images of "
            "brightness classes, 4 classes; chance 0.25), LiteRT for every .tflite variant. Each model trained 15 "
            "epochs here, then given as train.from_model; QAT 1 epoch, prune/PQAT/channel 1 epoch each (tiny).\n\n"
            f"{head}\n" + "\n".join(rows) + "\n")
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
