"""Helpers the KFP components call: metric logging, confusion matrix, workspace layout."""

from __future__ import annotations

from edgeqat.kfp_io import assemble_workspace, confusion_matrix, log_metrics


class _Recorder:
    def __init__(self):
        self.logged = {}

    def log_metric(self, key, value):
        self.logged[key] = value


def test_log_metrics_flattens_numeric_leaves():
    rec = _Recorder()
    n = log_metrics(rec, {"fp32": {"accuracy": 0.9, "speedup": None, "integer_only": True}, "num_train": 10,
                          "data_sha256": "abc", "image_shape": [8, 8, 1]})
    assert rec.logged == {"fp32.accuracy": 0.9, "fp32.integer_only": 1.0, "num_train": 10}
    assert n == 3


def test_confusion_matrix_counts_actual_by_predicted(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("actual,predicted\na,a\na,b\nb,b\nc,a\n")
    cats, m = confusion_matrix(csv, ["a", "b", "c"])
    assert cats == ["a", "b", "c"]
    assert m == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_assemble_workspace_lays_out_files_and_folders(tmp_path):
    src = tmp_path / "src"
    (src / "tflite").mkdir(parents=True)
    (src / "tflite" / "fp32.tflite").write_bytes(b"x")
    (src / "m.json").write_text("{}")
    ws = assemble_workspace(tmp_path / "ws", {"metrics/qat.json": src / "m.json", "models/tflite": src / "tflite",
                                              "plots/absent.csv": None})
    assert (ws / "metrics" / "qat.json").read_text() == "{}"
    assert (ws / "models" / "tflite" / "fp32.tflite").read_bytes() == b"x"
    assert (ws / "plots").is_dir() and not (ws / "plots" / "absent.csv").exists()
