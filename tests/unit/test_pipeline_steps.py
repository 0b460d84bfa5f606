"""train -> qat -> convert -> evaluate on tiny data, in-process (one TensorFlow import)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeqat.config import ConvertConfig, EvaluateConfig, QatConfig, TrainConfig, ValidateConfig
from edgeqat.errors import DataError, ModelError

BASIC = ["fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "qat_int8"]
TINY_TRAIN = dict(model="dscnn", alpha=0.25, epochs=6, batch_size=8, learning_rate=0.01, early_stopping_patience=0)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_prepared):
    """The stages as the CLI and KFP run them (run_stage), in one workspace laid out by the table."""
    from edgeqat.adapters.runner import run_stage
    from edgeqat.config import Params
    from edgeqat.workspace.stages import Workspace

    d = tmp_path_factory.mktemp("chain")
    params = Params(
        train=TrainConfig(**TINY_TRAIN), qat=QatConfig(epochs=1, batch_size=16),
        # The variants converted from the FP32 and plain QAT models (tests/unit/test_compression.py covers the rest).
        convert=ConvertConfig(variants=BASIC), evaluate=EvaluateConfig(latency_runs=5, warmup_runs=1),
        validate=ValidateConfig(devices=["cortex_m7", "coral_edgetpu", "rpi4"], required_devices=["cortex_m7"],
                                latency_runs=3, emulate=False))
    out = {"dir": d, "ws": Workspace(d), "prepared": tiny_prepared}
    for name in ("train", "qat", "convert", "evaluate", "validate"):
        out[name] = run_stage(name, params, d, overrides={"prepared": tiny_prepared})
    return out


def test_train_writes_model_metrics_and_curves(chain):
    ws, m = chain["ws"], chain["train"]
    assert ws.path("fp32_model").is_file()
    assert m["epochs_run"] == 6 and 0.0 <= m["test_accuracy"] <= 1.0
    # the runner writes the metrics the step returned (a function of the inputs); the wall time
    # goes to the stage's timings
    assert json.loads(ws.path("train_metrics").read_text()) == m and "timings" not in m
    assert json.loads(ws.path("train_timings").read_text())["training_seconds"] > 0
    rows = ws.path("train_history").read_text().splitlines()
    assert rows[0] == "epoch,loss,accuracy,val_loss,val_accuracy" and len(rows) == 7


def test_tiny_model_learns_the_synthetic_classes(chain):
    # Four well-separated classes: far above the 0.25 of chance after QAT.
    assert chain["qat"]["test_accuracy"] >= 0.6


def test_convert_writes_every_variant_with_a_model_card(chain):
    d = chain["ws"].path("tflite")
    card = json.loads((d / "model_card.json").read_text())
    assert card["class_names"] == ["tl", "tr", "bl", "br"]
    assert card["input_shape"] == [16, 16, 1]
    assert card["normalization"] == {"scheme": "zero_one", "mean": 0.0, "std": 255.0}
    assert set(card["variants"]) == {"fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "qat_int8"}
    for name, v in card["variants"].items():
        blob = (d / f"{name}.tflite").read_bytes()
        assert v["size_bytes"] == len(blob) and blob[4:8] == b"TFL3"
    for name in ("ptq_int8", "qat_int8"):
        v = card["variants"][name]
        assert v["input"]["dtype"] == "int8" and v["output"]["dtype"] == "int8"
        assert v["input"]["scale"] > 0 and v["integer_only"] is True
    assert card["variants"]["fp32"]["input"]["dtype"] == "float32"
    assert card["variants"]["fp32"]["integer_only"] is False
    assert card["variants"]["qat_int8"]["size_bytes"] < card["variants"]["fp32"]["size_bytes"]
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_evaluate_measures_every_variant_through_litert(chain):
    ws = chain["ws"]
    summary = json.loads(ws.path("summary").read_text())
    assert set(summary["variants"]) == {"fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "qat_int8"}
    latency = json.loads(ws.path("evaluate_timings").read_text())  # written by the runner
    for name, v in summary["variants"].items():
        assert 0.0 <= v["accuracy"] <= 1.0 and 0.0 <= v["agreement"] <= 1.0 and v["gzip_bytes"] > 0
        # host latency varies from run to run: it is in the stage's timings, never in summary.json
        assert "latency_p50_ms" not in v and "speedup" not in v
        assert latency[name]["latency_p50_ms"] > 0 and latency[name]["latency_p90_ms"] >= latency[name]["latency_p50_ms"]
    assert summary["variants"]["fp32"]["size_ratio"] == 1.0
    # The interpreter's FP32 predictions match Keras' on (nearly) every image.
    assert summary["variants"]["fp32"]["agreement"] >= 0.95
    confusion = ws.path("confusion").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 1 + summary["num_test"]
    md = ws.path("summary_report").read_text()
    assert "| qat_int8 |" in md and "| fp32 |" in md


def test_litert_accuracy_is_recomputed_not_copied(chain, tmp_path):
    """Evaluating a card whose int8 model is swapped for another gives that model's accuracy."""
    from edgeqat.quantization.runtime import TFLiteClassifier
    from edgeqat.data.shards import load_split_arrays
    from edgeqat.data.transform import normalize

    x, y = load_split_arrays(chain["prepared"] / "test")
    clf = TFLiteClassifier(chain["ws"].path("tflite") / "qat_int8.tflite")
    acc = float(np.mean([np.argmax(clf(img)) == label for img, label in zip(normalize(x, "zero_one"), y)]))
    assert acc == pytest.approx(json.loads(chain["ws"].path("summary").read_text())["variants"]["qat_int8"]["accuracy"])


@pytest.mark.parametrize("io_dtype, expect", [("uint8", "uint8"), ("float32", "float32")])
def test_io_dtype_sets_integer_model_io_and_keeps_its_accuracy(chain, tmp_path, io_dtype, expect):
    """The I/O type changes how images go in and scores come out, not what the model predicts:
    through LiteRT on the test split, the same accuracy as the int8-I/O file within one image."""
    from edgeqat.steps.convert import convert
    from edgeqat.steps.evaluate import evaluate

    ws = chain["ws"]
    convert(ConvertConfig(io_dtype=io_dtype, variants=["qat_int8"]), chain["prepared"], ws.path("fp32_model"),
            ws.path("qat_model"), tmp_path / "t")
    v = json.loads((tmp_path / "t" / "model_card.json").read_text())["variants"]["qat_int8"]
    assert v["input"]["dtype"] == expect and v["output"]["dtype"] == expect
    evaluate(EvaluateConfig(latency_runs=1, warmup_runs=0, reference="qat_int8"), chain["prepared"], tmp_path / "t",
             ws.path("fp32_model"), tmp_path / "summary.json")
    got = json.loads((tmp_path / "summary.json").read_text())
    want = json.loads(ws.path("summary").read_text())["variants"]["qat_int8"]["accuracy"]
    assert got["variants"]["qat_int8"]["accuracy"] == pytest.approx(want, abs=1 / got["num_test"] + 1e-9)
    assert want >= 0.6  # a model that learnt the classes: a broken I/O conversion would show


def test_training_is_deterministic(tiny_prepared, tmp_path):
    from edgeqat.steps.train import train

    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 1})
    a = train(cfg, tiny_prepared, tmp_path / "a.keras")
    b = train(cfg, tiny_prepared, tmp_path / "b.keras")
    assert a["test_accuracy"] == b["test_accuracy"] and a["val_accuracy"] == b["val_accuracy"]
    from edgeqat.models.io import load_model

    wa, wb = load_model(tmp_path / "a.keras").get_weights(), load_model(tmp_path / "b.keras").get_weights()
    assert all(np.array_equal(p, q) for p, q in zip(wa, wb))


def test_from_model_skips_training(chain, tmp_path):
    from edgeqat.steps.train import train

    m = train(TrainConfig(from_model=str(chain["ws"].path("fp32_model"))), chain["prepared"], tmp_path / "fp32.keras",
              history_path=tmp_path / "h.csv")
    assert m["epochs_run"] == 0
    assert m["test_accuracy"] == pytest.approx(chain["train"]["test_accuracy"])


def test_from_model_with_wrong_input_shape_is_refused(tiny_prepared, tmp_path):
    from edgeqat.models.io import save_model
    from edgeqat.models.zoo import build_model
    from edgeqat.steps.train import train

    save_model(build_model("dscnn", (24, 24, 1), 4, alpha=0.25), tmp_path / "other.keras")
    with pytest.raises(ModelError, match=r"other.keras.*input shape \(24, 24, 1\).*\(16, 16, 1\)"):
        train(TrainConfig(from_model=str(tmp_path / "other.keras")), tiny_prepared, tmp_path / "out.keras")
    assert not (tmp_path / "out.keras").exists()


def test_missing_pretrained_model_is_named(tiny_prepared, tmp_path):
    from edgeqat.steps.train import train

    with pytest.raises(ModelError, match="nope.keras: model not found"):
        train(TrainConfig(from_model=str(tmp_path / "nope.keras")), tiny_prepared, tmp_path / "out.keras")


def test_qat_finetune_with_unknown_classes_is_refused(chain, tmp_path):
    from conftest import synthetic_images
    from edgeqat.steps.qat import qat

    x, y = synthetic_images(20, seed=3)
    np.savez(tmp_path / "site.npz", x=x, y=y, class_names=np.array(["tl", "tr", "bl", "zz"]))
    with pytest.raises(DataError, match=r"\['zz'\]"):
        qat(QatConfig(epochs=1, finetune_source="npz", finetune_path=str(tmp_path / "site.npz")),
            chain["prepared"], chain["ws"].path("fp32_model"), tmp_path / "q.h5")


def test_corrupt_tflite_is_reported(tmp_path):
    from edgeqat.quantization.runtime import load_interpreter

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"definitely not a flatbuffer" * 10)
    with pytest.raises(ModelError, match="bad.tflite: not a loadable TFLite model"):
        load_interpreter(bad)


def test_evaluate_without_model_card_says_so(tiny_prepared, tmp_path):
    from edgeqat.steps.evaluate import evaluate

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no model_card.json"):
        evaluate(EvaluateConfig(), tiny_prepared, tmp_path / "empty", tmp_path / "x.keras", tmp_path / "s.json")


def test_qat_writes_tensorboard_scalars_and_fake_quant_ranges(chain):
    """By value: the ranges in TensorBoard are the ones the saved QAT model holds (the last
    epoch's), and the input's range is the normalised images' (0..~0.82 here), not tfmot's
    initial -6..6."""
    from edgeqat.models.io import load_model
    from edgeqat.models.training import fake_quant_ranges
    from edgeqat.tf_compat import tf

    tags, logged = set(), {}
    for f in sorted(chain["ws"].path("qat_tensorboard").rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                tags.add(v.tag)
                if v.tag.startswith("fake_quant/"):
                    logged[(v.tag.removeprefix("fake_quant/"), event.step)] = float(tf.make_ndarray(v.tensor))
    assert {"epoch_loss", "epoch_accuracy"} <= tags
    last = max(step for _, step in logged)
    saved = fake_quant_ranges(load_model(chain["ws"].path("qat_model"), quantized=True))
    assert saved and {name: value for (name, step), value in logged.items() if step == last} == pytest.approx(saved)
    lo = next(v for k, v in saved.items() if k.startswith("quantize_layer/") and k.endswith("_min"))
    hi = next(v for k, v in saved.items() if k.startswith("quantize_layer/") and k.endswith("_max"))
    assert -0.01 <= lo <= 0.01 and 0.6 < hi <= 1.0, (lo, hi)
    # the FP32 model has no fake-quant ranges: its TensorBoard logs hold no empty fake_quant run
    tb = chain["ws"].path("train_tensorboard")
    assert (tb / "train").is_dir() and not (tb / "fake_quant").exists()


def test_qat_on_site_data_scores_higher_on_the_sites_images(chain, tmp_path):
    """A domain-shifted site (inverted images: the lit quadrant is dark): QAT on the site's own
    images scores higher on the site's held-out images than QAT on the main training split.
    The site's images come at another size (20x20): resized on the fly."""
    from conftest import synthetic_images
    from edgeqat.data.shards import count_records
    from edgeqat.models.io import load_model
    from edgeqat.steps.qat import qat

    x, y = synthetic_images(80, size=20, seed=11)
    np.savez(tmp_path / "site.npz", x=255 - x, y=y, class_names=np.array(["tl", "tr", "bl", "br"]))
    test_x, test_y = synthetic_images(40, seed=12)
    test_x = 255 - test_x  # held out: the site's look, never fine-tuned on
    cfg = dict(epochs=2, batch_size=16, learning_rate=0.01, keep_float=[])
    scores = {}
    for name, extra in (("site", dict(finetune_source="npz", finetune_path=str(tmp_path / "site.npz"))), ("main", {})):
        m = qat(QatConfig(**cfg, **extra), chain["prepared"], chain["ws"].path("fp32_model"), tmp_path / f"{name}.h5")
        model = load_model(tmp_path / f"{name}.h5", quantized=True)
        preds = np.argmax(model(test_x[..., None].astype("float32") / 255.0, training=False).numpy(), axis=-1)
        scores[name] = float(np.mean(preds == test_y))
        assert m["finetune_images"] == (80 if name == "site" else count_records(chain["prepared"] / "train"))
    assert scores["site"] >= scores["main"] + 0.25 and scores["site"] >= 0.6, scores


def test_validate_adds_device_verdicts_to_the_summary(chain):
    ws, m = chain["ws"], chain["validate"]
    s = json.loads(ws.path("summary").read_text())
    ev = json.loads(ws.path("evaluation").read_text())
    assert s["variants"] == ev["variants"]  # the evaluate table, unchanged
    assert set(s["devices"]) == {"cortex_m7", "coral_edgetpu", "rpi4"}
    m7 = s["devices"]["cortex_m7"]
    assert m7["required"] is True and m7["passed"] is True and m7["arena_bytes"] > 0
    assert m7["accuracy"] == pytest.approx(ev["variants"]["qat_int8"]["accuracy"])
    assert m["passed"] is True and s["validation_passed"] is True
    md = ws.path("summary_report").read_text()
    assert "## Devices: `qat_int8`" in md and "| cortex_m7 | yes | PASS |" in md
    # evaluate kept its host latency record before validate ran: the committed table points there
    assert ws.path("host_latency").is_file()
    assert "it is in `reports/host_latency.json`" in md and "edgeqat stage evaluate" not in md


def test_the_validate_stage_measures_on_host_and_keeps_the_row(chain, tmp_path):
    """A device that is really there (`host`): its measured latency gates and is reported with its
    device and date; the row goes to the profiles folder's measured.csv."""
    from edgeqat.steps.validate import validate

    ws = chain["ws"]
    m = validate(ValidateConfig(devices=["host"], required_devices=["host"], latency_runs=5, emulate=False,
                                profiles_dir=str(tmp_path)),
                 chain["prepared"], ws.path("tflite"), ws.path("fp32_model"), ws.path("evaluation"), tmp_path / "summary.json",
                 tmp_path / "summary.md")
    host = json.loads((tmp_path / "summary.json").read_text())["devices"]["host"]
    assert m["passed"] and host["latency_source"] == "measured" and host["latency_ms"] == host["measured"]["p50_ms"] > 0
    assert host["measured"]["device"] == "host" and host["measured"]["parity_within_tolerance"] is True
    assert f"(measured on host, {host['measured']['date'][:10]}) |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "measured.csv").read_text().splitlines()[1].startswith("host,")


def test_validate_fails_when_a_required_device_fails(chain, tmp_path):
    from edgeqat.steps.validate import validate

    ws = chain["ws"]
    m = validate(ValidateConfig(model="fp32", devices=["coral_edgetpu"], required_devices=["coral_edgetpu"],
                                latency_runs=2, emulate=False),
                 chain["prepared"], ws.path("tflite"), ws.path("fp32_model"), ws.path("evaluation"), tmp_path / "summary.json")
    assert m["passed"] is False and m["failed_required"] == ["coral_edgetpu"]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert "float ops" in " ".join(s["devices"]["coral_edgetpu"]["reasons"])


def test_evaluate_records_chance_and_keeps_host_latency_while_the_models_are_the_same(chain, tmp_path):
    """The majority-class rate of the test split is in the summary; reports/host_latency.json is
    rewritten only when a model or the measuring settings change, and report.html shows it."""
    from edgeqat.data.shards import load_split_arrays
    from edgeqat.steps.evaluate import evaluate
    from edgeqat.steps.report import report

    ws, rec = chain["ws"], tmp_path / "host_latency.json"

    def run(cfg: EvaluateConfig) -> dict:
        return evaluate(cfg, chain["prepared"], ws.path("tflite"), ws.path("fp32_model"), tmp_path / "evaluation.json",
                        host_latency_json=rec)

    cfg = EvaluateConfig(latency_runs=5, warmup_runs=1)
    first = run(cfg)
    kept = rec.read_bytes()
    assert json.loads(kept)["qat_int8"]["latency_p50_ms"] == first["timings"]["qat_int8"]["latency_p50_ms"]
    second = run(cfg)  # the same files measured again: other figures, the same record
    assert rec.read_bytes() == kept and second["timings"]["host"] == first["timings"]["host"]
    run(EvaluateConfig(latency_runs=6, warmup_runs=1))
    assert json.loads(rec.read_text())["settings"]["latency_runs"] == 6

    s = json.loads((tmp_path / "evaluation.json").read_text())
    _, y = load_split_arrays(chain["prepared"] / "test")
    counts = np.bincount(y, minlength=len(s["class_names"]))
    assert s["majority_rate"] == pytest.approx(counts.max() / counts.sum())
    assert s["majority_class"] == s["class_names"][int(counts.argmax())]

    out = tmp_path / "report"
    report(cfg, ws.path("summary"), ws.path("devices_report"), ws.path("train_history"), ws.path("qat_history"),
           ws.path("confusion"), tmp_path / "none.png", tmp_path / "none", out / "report.html", out / "figures",
           out / "headline.json", rec, validate=ValidateConfig())
    html = (out / "report.html").read_text()
    p50 = json.loads(rec.read_text())["qat_int8"]["latency_p50_ms"]
    assert "<th>p50 ms (host)</th>" in html and f"<td>{p50:.3f}</td>" in html and "measured when these models" in html
    assert json.loads((out / "headline.json").read_text())["gate_passed"] is True

    # register.variant not built: validate validated its stand-in, which is at chance level here.
    # The report judges the stand-in (what register would register), as track and register do.
    from edgeqat.config import RegisterConfig

    stood = json.loads((ws.path("summary")).read_text())
    stood["validated_model"] = "ptq_int8"
    stood["variants"]["ptq_int8"]["accuracy"] = stood["majority_rate"]
    (tmp_path / "stood.json").write_text(json.dumps(stood))
    report(cfg, tmp_path / "stood.json", ws.path("devices_report"), ws.path("train_history"), ws.path("qat_history"),
           ws.path("confusion"), tmp_path / "none.png", tmp_path / "none", out / "report.html", out / "figures",
           out / "headline.json", rec, validate=ValidateConfig(), register=RegisterConfig(variant="qat_int8"))
    assert json.loads((out / "headline.json").read_text())["gate_passed"] is False
    assert "chance level: ptq_int8" in (out / "report.html").read_text()
