"""The receiver's state file, which models it watches, and the gates each model gets; no server."""

from __future__ import annotations

import json

import pytest

from edgeqat.config import RegisterConfig
from edgeqat.io import is_temp_leftover, read_json, sha256_file
from edgeqat.lifecycle.managed import Model, classify
from edgeqat.lifecycle.gates import gate_config, static_gates
from edgeqat.lifecycle.promotion import REJECTED_MARK, champion_stack, last_recorded, mark_unset, rejection_note
from edgeqat.lifecycle.receiver_state import STATE_NAME, ReceiverState, ReceiverStateError

# --- the state file ------------------------------------------------------------------------


def test_processed_deliveries_survive_a_restart(tmp_path):
    state = ReceiverState(tmp_path)
    assert state.remember("d-1") and not state.remember("d-1")
    restarted = ReceiverState(tmp_path)
    assert not restarted.remember("d-1")  # a replay after the restart is refused
    assert restarted.remember("d-2")


def test_the_delivery_memory_is_bounded_oldest_first(tmp_path):
    state = ReceiverState(tmp_path, max_deliveries=3)
    for i in range(5):
        assert state.remember(f"d-{i}")
    assert read_json(tmp_path / STATE_NAME)["deliveries"] == ["d-2", "d-3", "d-4"]
    assert ReceiverState(tmp_path, max_deliveries=3).remember("d-0")  # forgotten, so accepted again
    assert not ReceiverState(tmp_path, max_deliveries=3).remember("d-4")


def test_every_write_is_whole_or_not_at_all(tmp_path):
    state = ReceiverState(tmp_path)
    state.remember("d-1")
    before = (tmp_path / STATE_NAME).read_bytes()
    with pytest.raises(TypeError):  # not JSON: the write fails half-way through
        state.settle("m", None, object())  # type: ignore[arg-type]
    assert (tmp_path / STATE_NAME).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if is_temp_leftover(p.name)]
    assert state.model("m") is None  # memory follows the disk
    state.remember("d-2")
    assert read_json(tmp_path / STATE_NAME)["deliveries"] == ["d-1", "d-2"]


def test_deployed_is_checked_against_the_file_itself(tmp_path):
    (tmp_path / "cortex_m7").mkdir()
    f = tmp_path / "cortex_m7" / "cortex_m7.tflite"
    f.write_bytes(b"model v3")
    state = ReceiverState(tmp_path)
    state.settle("clf-cortex_m7", "cortex_m7", "3", exported={"version": "3", "sha256": sha256_file(f), "file": str(f)})
    entry = ReceiverState(tmp_path).model("clf-cortex_m7")
    assert entry["champion"] == "3" and entry["device"] == "cortex_m7" and entry["deployed"]["file"] == "cortex_m7/cortex_m7.tflite"
    assert entry["deployed"]["at"].endswith("+00:00")
    assert state.deployed("clf-cortex_m7", "3") and not state.deployed("clf-cortex_m7", "4")
    f.write_bytes(b"someone copied another file here")
    assert not state.deployed("clf-cortex_m7", "3")
    state.settle("clf-cortex_m7", "cortex_m7", None)  # champion removed: what was deployed is kept
    assert ReceiverState(tmp_path).model("clf-cortex_m7")["deployed"]["version"] == "3"


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": 99}), json.dumps([1, 2])])
def test_an_unreadable_state_file_is_a_clear_error(tmp_path, content):
    (tmp_path / STATE_NAME).write_text(content)
    with pytest.raises(ReceiverStateError, match=STATE_NAME + ".*move it aside"):
        ReceiverState(tmp_path)


# --- which models -----------------------------------------------------------------------------

TAGS = {"edgeqat.managed": "true", "edgeqat.device": "cortex_m7", "edgeqat.base_model": "clf"}


@pytest.mark.parametrize("name, tags, version_devices, expect", [
    ("clf", {}, [], Model("clf")),
    ("clf-cortex_m7", TAGS, [], Model("clf-cortex_m7", "cortex_m7")),
    ("clf-cortex_m7", {}, ["cortex_m7"], Model("clf-cortex_m7", "cortex_m7")),  # registered before the tags
    ("clf-auto", {}, [""], None),                            # a name alone is not enough
    ("clf-cortex_m7", {**TAGS, "edgeqat.base_model": "other"}, [], None),
    ("clf-x", {**TAGS, "edgeqat.device": "../../etc"}, [], None),  # a device becomes a folder name
    ("clf-..", {}, [".."], None),
    ("other-cortex_m7", {}, ["cortex_m7"], None),
])
def test_classify_recognises_edgeqat_models(name, tags, version_devices, expect):
    assert classify("clf", name, tags, lambda: version_devices) == expect


def test_each_device_deploys_to_a_folder_of_its_own(tmp_path):
    assert Model("clf").folder(tmp_path) == tmp_path
    assert Model("clf-cortex_m7", "cortex_m7").folder(tmp_path) == tmp_path / "cortex_m7"


# --- gates per model ---------------------------------------------------------------------------

DEVICE_TAGS = {"accuracy": "0.95", "accuracy_drop": "0.01", "size_bytes": "1000", "devices": "cortex_m7",
               "required_devices": "cortex_m7", "device.cortex_m7.passed": "true", "device": "cortex_m7"}


def test_a_per_device_model_is_gated_on_its_own_device_only():
    main = RegisterConfig(required_devices=["sim-m4", "rpi4"])
    assert static_gates(DEVICE_TAGS, main) == ["required device 'sim-m4' was not validated",
                                               "required device 'rpi4' was not validated"]
    assert gate_config(main, None) is main
    assert gate_config(main, "cortex_m7").required_devices == ["cortex_m7"]
    assert static_gates(DEVICE_TAGS, gate_config(main, "cortex_m7")) == []
    failing = {**DEVICE_TAGS, "device.cortex_m7.passed": "false", "device.cortex_m7.reasons": "arena 600 KB > 512 KB"}
    assert static_gates(failing, gate_config(main, "cortex_m7")) == ["device 'cortex_m7' failed: arena 600 KB > 512 KB"]


def test_the_other_thresholds_apply_to_per_device_models_alike():
    cfg = gate_config(RegisterConfig(min_accuracy=0.97, max_size_bytes=500), "cortex_m7")
    assert static_gates(DEVICE_TAGS, cfg) == ["accuracy 0.9500 < register.min_accuracy 0.97",
                                              "size 1,000 bytes > register.max_size_bytes 500"]


# --- rejection and removal -------------------------------------------------------------------------


def test_a_rejection_is_the_first_line_of_the_description_and_replaces_an_earlier_one():
    from datetime import datetime, timezone

    at = datetime(2025, 3, 1, 12, 0, 5, tzinfo=timezone.utc)
    once = rejection_note("| table |\nmore", "champion", "device 'm4' failed:\narena", at)
    first, rest = once.split("\n", 1)
    assert first == f"{REJECTED_MARK} champion** on 2025-03-01 12:00:05 UTC: device 'm4' failed: arena"
    assert rest == "\n| table |\nmore"
    twice = rejection_note(once, "champion", "size", at)
    assert twice.count(REJECTED_MARK) == 1 and twice.endswith("| table |\nmore") and ": size\n" in twice


def test_a_removal_ends_the_recorded_champion_and_a_rollback_restores_the_last(tmp_path):
    h = [{"alias": "champion", "action": "promote", "version": "1"},
         {"alias": "champion", "action": "ui", "version": "2"},
         {"alias": "champion", "action": "removed", "version": None}]
    assert last_recorded(h, "champion") is None and last_recorded(h[:2], "champion") == "2"
    assert champion_stack(h) == ["1", "2"]


def test_mark_unset_keeps_the_model_and_says_no_champion(tmp_path):
    (tmp_path / "export.json").write_text(json.dumps({"model_name": "clf", "version": "2", "champion_set": True}))
    mark_unset(tmp_path, "clf", "champion", "MLflow (seen by edgeqat webhook)")
    doc = read_json(tmp_path / "export.json")
    assert doc["version"] == "2" and doc["champion_set"] is False
    assert doc["champion_removed_by"].startswith("MLflow") and doc["champion_removed_at"].endswith("+00:00")
    mark_unset(tmp_path / "empty", "clf", "champion", "x")  # nothing deployed yet: still says so
    assert read_json(tmp_path / "empty" / "export.json")["champion_set"] is False


def test_a_rejection_note_fits_mlflows_description_column():
    from edgeqat.lifecycle.promotion import MAX_DESCRIPTION

    note = rejection_note("x" * MAX_DESCRIPTION, "champion", "too big")
    assert len(note) == MAX_DESCRIPTION and note.startswith(REJECTED_MARK) and note.endswith("(truncated by edgeqat)")
