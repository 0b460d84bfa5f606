"""The version-tag schema: register writes exactly the tags it always wrote, and they read back."""

from __future__ import annotations

import pytest

from edgeqat.config import RegisterConfig
from edgeqat.lifecycle.gates import static_gates
from edgeqat.lifecycle.version_tags import DeviceVerdict, VersionTags
from edgeqat.steps.register import recommended_tags, version_tags

SUMMARY = {
    "reference": "fp32",
    "variants": {"fp32": {"accuracy": 0.9722, "size_bytes": 80123, "gzip_bytes": 70111},
                 "qat_int8": {"accuracy": 0.9667, "size_bytes": 23456, "gzip_bytes": 17890, "latency_p50_ms": 0.041,
                              "integer_only": True}},
    "devices": {"rpi4": {"passed": True, "reasons": []},
                "cortex_m4": {"passed": False, "reasons": ["arena 600 KB > 512 KB", "latency 90 ms > 50 ms"]}},
    "required_devices": ["cortex_m4"],
}

# Captured from register before the schema existed (edgeqat at 1311ea7; MAIN: version_tags plus the
# edgeqat.model_name tag register() added beside it): the strings must not change.
MAIN = {"variant": "qat_int8", "integer_only": "true", "accuracy": "0.9667", "size_bytes": "23456",
        "gzip_bytes": "17890", "latency_p50_ms": "0.041", "reference": "fp32", "reference_accuracy": "0.9722",
        "accuracy_drop": "0.0055", "devices": "cortex_m4,rpi4", "required_devices": "cortex_m4",
        "device.cortex_m4.passed": "false", "device.cortex_m4.reasons": "arena 600 KB > 512 KB; latency 90 ms > 50 ms",
        "device.rpi4.passed": "true", "edgeqat.model_name": "edgeqat-classifier"}
PER_DEVICE = {"variant": "prune_qat_int8", "strategy": "prune_qat_int8", "device": "cortex_m7",
              "reason": "smallest that fits", "integer_only": "true", "edgeqat.model_name": "clf-cortex_m7",
              "accuracy_split": "test", "accuracy": "0.9611", "size_bytes": "20000", "gzip_bytes": "15000",
              "reference": "fp32", "reference_accuracy": "0.9722", "accuracy_drop": "0.0111", "devices": "cortex_m7",
              "required_devices": "cortex_m7", "device.cortex_m7.passed": "true"}


def test_register_writes_the_main_version_tags_unchanged():
    assert version_tags(RegisterConfig(variant="qat_int8"), SUMMARY, {"integer_only": True}) == MAIN


def test_register_writes_the_per_device_version_tags_unchanged():
    entry = {"integer_only": 1, "validation": {"passed": True, "reasons": [], "accuracy": 0.9611, "sha256": "ab"}}
    measured = {"accuracy": 0.9611, "size_bytes": 20000, "gzip_bytes": 15000}
    got = recommended_tags("cortex_m7", {"chosen": "prune_qat_int8", "reason": "smallest that fits"}, entry, measured,
                           SUMMARY, "clf-cortex_m7")
    assert got == PER_DEVICE


@pytest.mark.parametrize("tags", [
    MAIN, PER_DEVICE, {},
    {**MAIN, "gates.passed": "false", "gates.reasons": "accuracy 0.9 < 0.95", "sha256": "ab" * 32,
     "mlflow_run_id": "r1", "git_commit": "deadbeef", "params_sha256": "cd" * 32},
    {"device.x.reasons": "reasons with no verdict", "device.passed": "true", "accuracy": "1", "size_bytes": "1e-05"},
])
def test_reading_then_writing_round_trips(tags):
    assert VersionTags.from_tags(tags).to_tags() == tags


def test_the_reader_types_what_it_reads():
    t = VersionTags.from_tags({**MAIN, "gates.passed": "true"})
    assert (t.accuracy, t.size_bytes, t.integer_only, t.gates_passed) == (0.9667, 23456, True, True)
    assert t.devices == ("cortex_m4", "rpi4") and t.required_devices == ("cortex_m4",)
    assert t.verdict("cortex_m4") == DeviceVerdict(False, "arena 600 KB > 512 KB; latency 90 ms > 50 ms")
    assert t.verdict("rpi4") == DeviceVerdict(True) and t.verdict("esp32") is None


def test_a_version_made_in_the_mlflow_ui_reads_as_unmeasured():
    t = VersionTags.from_tags({"mlflow.note": "hand-made", "accuracy": "n/a"})
    assert t.number("accuracy") is None and t.devices is None and t.required_devices is None and t.gates_passed is None
    assert static_gates({}, RegisterConfig())[0].startswith("no accuracy tag: not registered by edgeqat")


def test_the_gates_read_what_register_wrote():
    assert static_gates(MAIN, RegisterConfig()) == [
        "device 'cortex_m4' failed: arena 600 KB > 512 KB; latency 90 ms > 50 ms"]
    assert static_gates(MAIN, RegisterConfig(required_devices=["rpi4"])) == []
