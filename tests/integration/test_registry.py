"""The model registry against a real `mlflow server` on 127.0.0.1, with webhooks on.

One TensorFlow process (this one) builds a tiny .tflite + model card with the real steps;
the server boots meanwhile. Each case lays that build out as a workspace the way the DVC
pipeline writes it and runs the real `track` then `register` steps on it: one MLflow run
per execution, versions pointing at its LoggedModels. Its own server, not the shared
`mlflow_server`: webhooks to a loopback receiver over http need MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS
and MLFLOW_WEBHOOK_ALLOWED_SCHEMES, and MLFLOW_WEBHOOK_CACHE_TTL=1 so a webhook installed
mid-test is used at once (the server caches the webhook list for 60 s by default).
Tests run in file order and share the registered model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeqat.config import ConvertConfig, EvaluateConfig, Params, QatConfig, RegisterConfig, TrackConfig, TrainConfig
from edgeqat.errors import EdgeqatError, GateFailed, ModelError
from edgeqat.io import read_json, sha256_file, write_json
from integration.conftest import BIN, free_port, start_mlflow_server, stop_process_group, wait_until_up

pytestmark = pytest.mark.integration

NAME = "edgeqat-it"
SECRET = "it-webhook-secret-0123456789"
EXPERIMENT = "it-registry"  # track.experiment: the runs the versions point into
# The failing gate exercised here is a device verdict; the accuracy gates are unit-tested
# (a 4-epoch model's QAT drop vs FP32 is not what these tests are about, nor is its accuracy on
# 20 test images beating chance: tests/integration/test_chance_level.py is). validate required
# only sim-pi, the registry requires both devices: the "bad" execution passes validate, is
# tracked and registered, and fails the registry's gate on sim-m4.
CFG = RegisterConfig(model_name=NAME, experiment="it-registry", max_accuracy_drop=0.5, chance_margin=0.0,
                     required_devices=["sim-m4", "sim-pi"])
M4_BUDGET = "arena 300 KB > 256 KB"


@pytest.fixture(scope="module")
def server_proc(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-webhooks")
    proc, url = start_mlflow_server(root, {"MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
                                           "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
                                           "MLFLOW_WEBHOOK_CACHE_TTL": "1"})
    try:
        yield {"proc": proc, "url": url, "log": root / "server.log"}
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_prepared, server_proc):
    """fp32.keras, tflite/{fp32,qat_int8}.tflite + model card, evaluate's metrics and timings,
    and summaries as validate leaves them (good, bad, failed): the real steps, tiny."""
    from edgeqat.steps.convert import convert
    from edgeqat.steps.evaluate import evaluate
    from edgeqat.steps.qat import qat
    from edgeqat.steps.train import train
    from edgeqat.workspace.timings import write_stage_timings

    d = tmp_path_factory.mktemp("built")
    train(TrainConfig(model="dscnn", alpha=0.25, epochs=4, batch_size=8, learning_rate=0.01, early_stopping_patience=0),
          tiny_prepared, d / "fp32.keras", history_path=d / "plots" / "train_history.csv")
    qat(QatConfig(epochs=1, batch_size=16), tiny_prepared, d / "fp32.keras", d / "qat.h5",
        history_path=d / "plots" / "qat_history.csv")
    convert(ConvertConfig(variants=["fp32", "qat_int8"]), tiny_prepared, d / "fp32.keras", d / "qat.h5", d / "tflite")
    started = datetime.now(timezone.utc)
    result = evaluate(EvaluateConfig(latency_runs=3, warmup_runs=1), tiny_prepared, d / "tflite", d / "fp32.keras",
                      d / "summary.json", d / "summary.md", d / "confusion.csv")
    write_json(d / "metrics" / "evaluate.json", {k: v for k, v in result.items() if k != "timings"})  # as the runner does
    write_stage_timings(d, "evaluate", started, datetime.now(timezone.utc), result["timings"],
                        d / "timings" / "evaluate.json")
    summary = {**read_json(d / "summary.json"), "validated_model": "qat_int8"}
    m4_fails = {"passed": False, "reasons": [M4_BUDGET]}
    summaries = {
        "good": {**summary, "required_devices": ["sim-pi"], "validation_passed": True,
                 "devices": {"sim-m4": {"passed": True, "reasons": []}, "sim-pi": {"passed": True, "reasons": []}}},
        "bad": {**summary, "required_devices": ["sim-pi"], "validation_passed": True,
                "devices": {"sim-m4": m4_fails, "sim-pi": {"passed": True, "reasons": []}}},
        # a required device failed at validate: tracked (FAILED), never registered
        "failed": {**summary, "required_devices": ["sim-m4"], "validation_passed": False, "devices": {"sim-m4": m4_fails}},
    }
    for name, s in summaries.items():
        (d / name).mkdir()
        (d / name / "summary.json").write_text(json.dumps(s))
        (d / name / "summary.md").write_text("table\n")
    return {"dir": d, "prepared": tiny_prepared}


@pytest.fixture(scope="module")
def url(server_proc, built):
    wait_until_up(server_proc["proc"], server_proc["url"], server_proc["log"], timeout=180)
    return server_proc["url"]


def _params(cfg: RegisterConfig = CFG, experiment: str = EXPERIMENT) -> Params:
    return Params(register=cfg, track=TrackConfig(experiment=experiment))


def _workspace(built, ws: Path, which: str = "good", recommend: dict[str, float | dict | None] | None = None) -> Path:
    """The built model laid out as the DVC pipeline writes it, with the ``which`` summary.

    ``recommend``: device -> the test-split accuracy of the model recommended for it (the built
    qat_int8 file), or a verdict ``{"accuracy", "passed", "reasons"}`` of its validation on the
    device, or None when no model fits it; as the recommend step writes them."""
    d = built["dir"]
    shutil.copytree(d / "tflite", ws / "models" / "tflite")
    shutil.copy(d / "fp32.keras", ws / "models" / "fp32.keras")
    shutil.copytree(d / "metrics", ws / "metrics")
    shutil.copytree(d / "plots", ws / "plots")  # the training curves
    shutil.copytree(d / "timings", ws / "logs" / "timings")
    (ws / "reports").mkdir()
    for f in ("summary.json", "summary.md"):
        shutil.copy(d / which / f, ws / "reports" / f)
    if recommend is not None:
        source = d / "tflite" / "qat_int8.tflite"
        chosen, report = {}, {"enabled": True, "splits": {"search": "val", "reported": "test"}, "devices": {}}
        for dev, outcome in recommend.items():
            if outcome is None:
                report["devices"][dev] = {"chosen": None, "candidates": [],
                                          "reason": f"no model fits {dev}: the closest, qat_int8, misses flash by 90%."}
                continue
            verdict = outcome if isinstance(outcome, dict) else {"accuracy": outcome, "passed": True, "reasons": []}
            accuracy = verdict["accuracy"]
            (ws / "models" / "recommended").mkdir(parents=True, exist_ok=True)
            dest = ws / "models" / "recommended" / f"{dev}.tflite"
            shutil.copy(source, dest)
            row = {"candidate": "qat_int8", "integer_only": True, "accuracy": accuracy + 0.01,  # on the val split
                   "size_bytes": source.stat().st_size, "arena_bytes": 1000, "latency_ms_estimate": 2.0}
            reason = f"QAT int8: fits {dev} with 0.0 pt accuracy loss on the validation split."
            test = {**verdict, "split": "test", "reference_accuracy": 0.95, "accuracy_drop": 0.95 - accuracy,
                    "sha256": sha256_file(dest)}
            report["devices"][dev] = {"chosen": "qat_int8", "reason": reason, "candidates": [row], "test": test}
            chosen[dev] = {"file": f"{dev}.tflite", "sha256": test["sha256"], "strategy": "qat_int8", "reason": reason,
                           "integer_only": True, "accuracy": accuracy, "val_accuracy": row["accuracy"],
                           **{k: row[k] for k in ("size_bytes", "arena_bytes", "latency_ms_estimate")},
                           "outputs": "logits", "validation": test}
        write_json(ws / "models" / "recommended" / "recommended.json", chosen)
        write_json(ws / "reports" / "recommendation" / "recommendation.json", report)
    return ws


def _track_register(url: str, ws: Path, cfg: RegisterConfig = CFG) -> dict:
    """The track then register steps on workspace ``ws``: register's result, plus track's as ``tracked``."""
    from edgeqat.steps.register import register
    from edgeqat.steps.track import track

    params = _params(cfg)
    tracked = track(params, workspace=ws, uri=url)
    return {**register(params, workspace=ws, uri=url), "tracked": tracked, "root": ws}


def _logged_model_of(reg, name: str, version: str) -> str:
    """The id of the LoggedModel that version ``version`` of ``name`` points at, checked both ways.

    MLflow 3.17's SQL registry store does not keep ``ModelVersion.model_id`` (get_model_version
    returns None there); the lineage it keeps is the source ``models:/<model_id>`` and the
    LoggedModel's ``mlflow.modelVersions`` tag naming the version."""
    mv = reg.client.get_model_version(name, str(version))
    model_id = mv.model_id or mv.source.removeprefix("models:/")
    assert mv.source == f"models:/{model_id}", mv.source
    listed = json.loads(reg.client.get_logged_model(model_id).tags.get("mlflow.modelVersions", "[]"))
    assert (name, str(version)) in {(m["name"], str(m["version"])) for m in listed}, listed
    return model_id


@pytest.fixture(scope="module")
def v_good(built, url, tmp_path_factory):
    return _track_register(url, _workspace(built, tmp_path_factory.mktemp("ws-good"), "good"))


@pytest.fixture(scope="module")
def v_bad(built, url, tmp_path_factory):
    return _track_register(url, _workspace(built, tmp_path_factory.mktemp("ws-bad"), "bad"))


@pytest.fixture(scope="module")
def reg(url):
    from edgeqat.lifecycle.registry import Registry

    return Registry(url)


def cli(url: str, *args: str):
    """The real `edgeqat` command line, in-process (no second interpreter to start)."""
    from edgeqat.adapters.cli.app import app

    params = Path(os.environ.get("EDGEQAT_IT_PARAMS", ""))
    res = CliRunner().invoke(app, [*args, "--params", str(params)],
                             env={"MLFLOW_TRACKING_URI": url, "EDGEQAT_WEBHOOK_SECRET": SECRET})
    return res


@pytest.fixture(scope="module")
def deploy_dir(tmp_path_factory):
    """register.deploy_dir of these tests: the receiver's folder, and `export`'s default."""
    return tmp_path_factory.mktemp("deploy") / "champion"


@pytest.fixture(scope="module", autouse=True)
def it_params(tmp_path_factory, deploy_dir):
    import yaml

    p = tmp_path_factory.mktemp("params") / "params.yaml"
    p.write_text(yaml.safe_dump({"register": {**json.loads(CFG.model_dump_json()), "deploy_dir": str(deploy_dir)}}))
    os.environ["EDGEQAT_IT_PARAMS"] = str(p)
    yield p
    os.environ.pop("EDGEQAT_IT_PARAMS", None)


def set_alias_rest(url: str, version: str, alias: str = "champion", name: str = NAME) -> None:
    """What the MLflow UI does when someone sets an alias."""
    _alias_rest(url, "POST", {"name": name, "alias": alias, "version": str(version)})


def delete_alias_rest(url: str, alias: str = "champion", name: str = NAME) -> None:
    """What the MLflow UI does when someone removes an alias."""
    _alias_rest(url, "DELETE", {"name": name, "alias": alias})


def _alias_rest(url: str, method: str, body: dict) -> None:
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/registered-models/alias", method=method,
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def wait_for(cond, timeout: float = 45.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


# --- register --------------------------------------------------------------------------


def test_register_leaves_a_traced_version_with_challenger_and_a_loadable_pyfunc(built, url, v_good, reg):
    from edgeqat.quantization.runtime import TFLiteClassifier
    from edgeqat.data.shards import load_split_arrays
    from edgeqat.lifecycle.registry import load_pyfunc

    d, ws = built["dir"], v_good["root"]
    assert v_good["new"] and v_good["gates_passed"] and v_good["challenger"]
    v = reg.version(NAME, v_good["version"])
    tags = v["tags"]
    summary = read_json(d / "good" / "summary.json")
    row = summary["variants"]["qat_int8"]
    assert tags["sha256"] == sha256_file(d / "tflite" / "qat_int8.tflite")
    assert tags["data_sha256"] == summary["data_sha256"] and len(tags["params_sha256"]) == 64
    assert tags["git_commit"]  # "unknown" outside a git checkout, the commit inside one
    assert float(tags["accuracy"]) == pytest.approx(row["accuracy"]) and int(tags["size_bytes"]) == row["size_bytes"]
    assert float(tags["accuracy_drop"]) == pytest.approx(summary["variants"]["fp32"]["accuracy"] - row["accuracy"], abs=1e-6)
    timed = read_json(d / "timings" / "evaluate.json")["qat_int8"]  # logs/timings/evaluate.json
    assert float(tags["latency_p50_ms"]) == pytest.approx(timed["latency_p50_ms"])
    assert tags["device.sim-m4.passed"] == "true" and tags["device.sim-pi.passed"] == "true"
    assert tags["gates.passed"] == "true"
    assert "| qat_int8 |" in v["description"] and "| sim-m4 | yes |" in v["description"]
    assert reg.alias_version(NAME, "challenger") == v_good["version"]
    assert read_json(ws / "logs" / "registered.json")["version"] == v_good["version"]

    # lineage: the version points at the LoggedModel of the execution's one run
    run_id = v_good["tracked"]["run_id"]
    assert v_good["run_id"] == run_id and v["run_id"] == run_id and tags["mlflow_run_id"] == run_id
    run = reg.client.get_run(run_id)
    model_id = run.data.tags["edgeqat.model.qat_int8"]
    assert _logged_model_of(reg, NAME, v_good["version"]) == model_id
    assert model_id in {o.model_id for o in run.outputs.model_outputs}
    assert run.info.status == "FINISHED" and run.data.tags["edgeqat.gate"] == "passed"
    assert run.data.tags["edgeqat.fingerprint"] == read_json(ws / "reports" / "tracked.json")["fingerprint"]
    assert {a.path for a in reg.client.list_artifacts(run_id)} >= {"models", "reports"}
    assert {a.path for a in reg.client.list_artifacts(run_id, "models")} >= {"models/fp32.keras", "models/tflite"}
    assert run.data.metrics["variants/qat_int8.accuracy"] == pytest.approx(row["accuracy"])
    # the LoggedModel's page: the headline measured on it, the settings it was made with
    logged = reg.client.get_logged_model(model_id)
    assert {m.key: m.value for m in logged.metrics}["headline/accuracy"] == pytest.approx(round(row["accuracy"], 4))
    assert logged.params["register.variant"] == "qat_int8"

    model = load_pyfunc(f"models:/{NAME}@challenger", url)
    x, _ = load_split_arrays(built["prepared"] / "test")
    out = model.predict(x[..., None] if x.ndim == 3 else x)
    clf = TFLiteClassifier(d / "tflite" / "qat_int8.tflite")
    card = read_json(d / "tflite" / "model_card.json")
    logits = np.stack([clf((img.astype(np.float32) - card["normalization"]["mean"]) / card["normalization"]["std"]) for img in x])
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert list(out["class_index"]) == list(probs.argmax(-1))
    assert list(out["class_name"]) == [card["class_names"][i] for i in probs.argmax(-1)]
    np.testing.assert_allclose(np.stack(out["probabilities"]), probs, rtol=1e-6, atol=1e-7)
    assert model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["dtype"] == "uint8"


def test_tracking_and_registering_the_same_execution_again_creates_nothing(url, v_good, reg):
    from edgeqat.steps.register import register
    from edgeqat.steps.track import track

    before = (reg.versions(NAME), len(reg.history(NAME)))
    again = track(_params(), workspace=v_good["root"], uri=url)
    assert again["reused"] and again["run_id"] == v_good["run_id"]
    exp = reg.client.get_experiment_by_name(EXPERIMENT)
    fingerprint = read_json(v_good["root"] / "reports" / "tracked.json")["fingerprint"]
    same = reg.client.search_runs([exp.experiment_id], f"tags.`edgeqat.fingerprint` = '{fingerprint}'")
    assert [r.info.run_id for r in same] == [v_good["run_id"]]  # still one run for the execution
    out = register(_params(), workspace=v_good["root"], uri=url)
    assert not out["new"] and out["version"] == v_good["version"] and out["run_id"] == v_good["run_id"]
    assert (reg.versions(NAME), len(reg.history(NAME))) == before
    assert reg.alias_version(NAME, "challenger") == v_good["version"]


def test_a_version_failing_a_gate_is_registered_without_challenger(v_good, v_bad, reg):
    assert v_bad["new"] and not v_bad["gates_passed"] and not v_bad["challenger"]
    assert v_bad["run_id"] == v_bad["tracked"]["run_id"] != v_good["run_id"]  # another execution, another run
    tags = reg.version(NAME, v_bad["version"])["tags"]
    assert tags["gates.passed"] == "false" and f"device 'sim-m4' failed: {M4_BUDGET}" in tags["gates.reasons"]
    assert tags["device.sim-m4.reasons"] == M4_BUDGET
    assert reg.alias_version(NAME, "challenger") == v_good["version"]


# --- champion, export, promote -----------------------------------------------------------


def test_champion_set_through_rest_then_export_is_byte_identical(url, v_good, reg, tmp_path):
    set_alias_rest(url, v_good["version"])
    res = cli(url, "export", "--alias", "champion", "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output + repr(res.exception)
    exported = (tmp_path / "out" / "qat_int8.tflite").read_bytes()
    registered = reg.download(NAME, v_good["version"], tmp_path / "dl", "artifacts/qat_int8.tflite")
    assert exported == registered.read_bytes()
    card = read_json(tmp_path / "out" / "model_card.json")
    assert list(card["variants"]) == ["qat_int8"] and card["variants"]["qat_int8"]["sha256"] == v_good["sha256"]
    assert read_json(tmp_path / "out" / "export.json")["version"] == v_good["version"]


def test_export_for_an_ethos_u_device_ships_vela_output(url, v_good, reg, tmp_path):
    from edgeqat.devices.vela import compiled_ops

    res = cli(url, "export", "--version", v_good["version"], "--device", "ethos_u55_128", "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output + repr(res.exception)
    shipped = tmp_path / "out" / "qat_int8_vela.tflite"
    ops = compiled_ops(shipped.read_bytes())
    assert "ethos-u" in ops  # Vela's NPU custom op: this is the compiled file, not the registered one
    assert not (tmp_path / "out" / "qat_int8.tflite").exists()
    dep = read_json(tmp_path / "out" / "model_card.json")["variants"]["qat_int8"]["deployment"]
    assert dep["file"] == shipped.name and dep["sha256"] == sha256_file(shipped)
    assert dep["vela_version"] == "5.2.0" and dep["vela_config"]["accelerator_config"] == "ethos-u55-128"
    assert dep["source_sha256"] == v_good["sha256"]
    assert read_json(tmp_path / "out" / "export.json")["file"] == shipped.name


def test_export_refuses_a_file_whose_checksum_differs(url, v_good, reg, tmp_path):
    reg.tag_version(NAME, v_good["version"], "sha256", "0" * 64)
    try:
        res = cli(url, "export", "--version", v_good["version"], "--out", str(tmp_path / "out"))
        assert isinstance(res.exception, EdgeqatError) and "does not match the registered" in str(res.exception)
        assert not (tmp_path / "out").exists()
    finally:
        reg.tag_version(NAME, v_good["version"], "sha256", v_good["sha256"])


def test_promote_refuses_a_failing_version_and_force_records_why(url, v_good, v_bad, reg):
    from edgeqat.lifecycle.promotion import PromotionRefused

    assert reg.alias_version(NAME, "champion") == v_good["version"]
    res = cli(url, "promote", v_bad["version"], "--alias", "champion")
    assert isinstance(res.exception, PromotionRefused)
    assert "device 'sim-m4' failed: arena 300 KB > 256 KB" in str(res.exception)
    assert reg.alias_version(NAME, "champion") == v_good["version"]

    res = cli(url, "promote", v_bad["version"], "--force")
    assert isinstance(res.exception, EdgeqatError) and "--force needs --reason" in str(res.exception)

    res = cli(url, "promote", v_bad["version"], "--force", "--reason", "field trial on m4 rev B", "--by", "alice")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert reg.alias_version(NAME, "champion") == v_bad["version"]

    hist = cli(url, "history", "--alias", "champion", "--json")
    assert hist.exit_code == 0, hist.output
    events = json.loads(hist.stdout)[NAME]
    refused = [h for h in events if (h["action"], h["version"]) == ("refused", v_bad["version"])]
    forced = [h for h in events if (h["action"], h["version"], h["previous"], h["by"], h["reason"])
              == ("force", v_bad["version"], v_good["version"], "alice", "field trial on m4 rev B")]
    assert refused and "arena 300 KB" in "; ".join(refused[0]["reasons"]) and forced
    table = cli(url, "history", "--alias", "champion").stdout  # the same, aligned for people
    assert re.search(rf"^\S+ \S+ +champion +force +{v_bad['version']} +{v_good['version']} +alice +field trial", table, re.M), table
    assert "challenger" not in table

    res = cli(url, "promote", v_good["version"], "--reason", "back to the validated one")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert reg.alias_version(NAME, "champion") == v_good["version"]


# --- concurrency ---------------------------------------------------------------------------


# 50 promotions (the figure) take ~11 s against the server at a load of 5 on 2 cores: slow
# tier; 8 (more events than the 5 tags allowed) keep the bound in the fast tier in ~2 s.
@pytest.mark.parametrize("moves", [8, pytest.param(50, marks=pytest.mark.slow)])
def test_many_promotions_keep_the_model_tags_bounded_and_the_whole_history(url, v_good, reg, tmp_path, moves):
    """The history is one artifact per event in a run of its own; the registered model keeps only
    where it is and the last move. History written by earlier versions (a tag per event) still reads."""
    from edgeqat.lifecycle.promotion import promote
    from edgeqat.lifecycle.registry import HISTORY_PREFIX

    name = f"history-it-{moves}"
    cfg = CFG.model_copy(update={"model_name": name})
    reg.ensure_model(name)
    model_id = _logged_model_of(reg, NAME, v_good["version"])
    tags = {k: v for k, v in reg.version(NAME, v_good["version"])["tags"].items() if not k.startswith("edgeqat.")}
    versions = [reg.create_version(name, model_id, v_good["run_id"], tags, "history test") for _ in range(2)]
    old = {f"{HISTORY_PREFIX}20200101T000000000000.0000aaaa": {"action": "promote", "alias": "champion", "version": "1",
                                                                "by": "edgeqat 0.x", "at": "2020-01-01T00:00:00"},
           f"{HISTORY_PREFIX}20200101T000001000000.0000bbbb": {"action": "refused", "alias": "champion", "version": "2",
                                                                "by": "edgeqat 0.x", "at": "2020-01-01T00:00:01"}}
    for key, event in old.items():  # as edgeqat before this version recorded it
        reg.client.set_registered_model_tag(name, key, json.dumps(event))
    t0 = time.monotonic()
    for i in range(moves):
        promote(reg, cfg, name, versions[i % 2], reason=f"promotion {i}", by="history test")
    print(f"\n{moves} promotions: {time.monotonic() - t0:.1f} s")
    ours = [k for k in reg.registered_model(name)["tags"] if k.startswith("edgeqat.")]
    assert len(ours) <= 5, ours
    res = cli(url, "history", "--model", name, "--json")
    assert res.exit_code == 0, res.output + repr(res.exception)
    events = json.loads(res.stdout)[name]
    assert [e.get("reason") for e in events if e.get("by") == "history test"] == [f"promotion {i}" for i in range(moves)]
    assert [e["key"] for e in events[:2]] == list(old)  # the old tags first: time order
    t0 = time.monotonic()
    table = cli(url, "history", "--model", name, "--wide")
    print(f"edgeqat history ({moves + 2} events, in-process): {time.monotonic() - t0:.1f} s")
    shown = re.findall(r"promotion (\d+)\b", table.stdout)
    assert sorted(map(int, shown)) == list(range(moves)) and table.stdout.count("edgeqat 0.x") == 2
    from edgeqat.adapters.cli.app import app

    for columns in ("80", "100"):  # narrow: times and versions whole, the reasons wrap between words
        narrow = CliRunner().invoke(app, ["history", "--model", name, "--params", os.environ["EDGEQAT_IT_PARAMS"]],
                                    env={"MLFLOW_TRACKING_URI": url, "COLUMNS": columns}).stdout
        assert "…" not in narrow and max(map(len, narrow.splitlines())) <= int(columns), narrow
        rows = [line.split() for line in narrow.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line)]
        assert len(rows) == moves + 2 and {r[4] for r in rows[2:]} == set(versions), rows[:3]


def test_two_concurrent_first_executions_in_a_fresh_experiment_leave_consistent_versions_and_aliases(
        built, url, v_good, v_bad, reg, tmp_path, monkeypatch):
    """Both first `track`s race to create the experiment; both registrations race for challenger."""
    from mlflow.tracking import MlflowClient

    from edgeqat.lifecycle.tracking import VIEW_KEY, VIEW_TAG
    from edgeqat.steps.register import register
    from edgeqat.steps.track import track

    experiment = f"it-fresh-{uuid.uuid4().hex[:8]}"
    assert reg.client.get_experiment_by_name(experiment) is None
    create, both_missing, created = MlflowClient.create_experiment, threading.Barrier(2), []

    def racing_create(self, name, *args, **kwargs):
        """Neither creates it before both found it missing: the race, every time."""
        if name == experiment:
            both_missing.wait(timeout=60)
        try:
            created.append(create(self, name, *args, **kwargs))
        except Exception as err:
            created.append(err)
            raise
        return created[-1]

    monkeypatch.setattr(MlflowClient, "create_experiment", racing_create)
    # ...and both set the new experiment's runs-table view at once: MLflow's SQL store refuses
    # the second insert of the same tag, which track must take as done (the other wrote it)
    set_tag, both_set, tag_sets = MlflowClient.set_experiment_tag, threading.Barrier(2), []

    def racing_set_tag(self, experiment_id, key, value):
        if key.startswith(VIEW_TAG):
            try:
                both_set.wait(timeout=20)
            except threading.BrokenBarrierError:  # the other already saw it set: no race this time
                pass
        try:
            tag_sets.append(set_tag(self, experiment_id, key, value))
        except Exception as err:
            tag_sets.append(err)
            raise

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", racing_set_tag)
    params = _params(experiment=experiment)
    spaces = [_workspace(built, tmp_path / f"ws{i}") for i in range(2)]
    before = set(reg.versions(NAME))
    barrier = threading.Barrier(2)
    tracked, results, errors = [None, None], [None, None], []

    def one(i):
        try:
            barrier.wait(timeout=30)
            # the same results from two executions (a tag of each sets them apart)
            tracked[i] = track(params, workspace=spaces[i], uri=url, extra_tags={"it.execution": str(i)})
            barrier.wait(timeout=180)
            results[i] = register(params, workspace=spaces[i], uri=url)
        except Exception as err:  # surfaced below
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(created) == 2 and sum(isinstance(c, Exception) for c in created) == 1, created  # one lost, and coped
    assert reg.client.get_experiment_by_name(experiment).tags.get(VIEW_TAG + VIEW_KEY), tag_sets  # the view is saved
    exp = reg.client.get_experiment_by_name(experiment)
    assert {t["experiment_id"] for t in tracked} == {exp.experiment_id}
    runs = {r.info.run_id: r for r in reg.client.search_runs([exp.experiment_id])}
    assert set(runs) == {t["run_id"] for t in tracked} and len(runs) == 2
    assert all(r.info.status == "FINISHED" for r in runs.values())
    new = {r["version"] for r in results}
    assert len(new) == 2 and not new & before and all(r["new"] for r in results)
    assert set(reg.versions(NAME)) == before | new
    assert reg.alias_version(NAME, "challenger") == max(new, key=int)  # the newest passing version
    assert reg.alias_version(NAME, "champion") == v_good["version"]     # untouched (auto_promote is off)
    for t, r in zip(tracked, results):
        assert r["run_id"] == t["run_id"] and reg.version(NAME, r["version"])["run_id"] == t["run_id"]
        assert _logged_model_of(reg, NAME, r["version"]) == runs[t["run_id"]].data.tags["edgeqat.model.qat_int8"]
    recorded = {h["version"] for h in reg.history(NAME) if h.get("action") == "register"}
    assert new <= recorded


# --- a required device failed ----------------------------------------------------------------


def test_a_required_device_failure_is_tracked_as_a_failed_run_and_registers_nothing(built, url, reg, tmp_path):
    from edgeqat.steps.register import register
    from edgeqat.steps.track import track

    ws = _workspace(built, tmp_path, "failed")
    models = {m["name"]: reg.versions(m["name"]) for m in reg.find_models(NAME)}
    tracked = track(_params(), workspace=ws, uri=url)
    run = reg.client.get_run(tracked["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["edgeqat.gate"] == "failed"
    assert "sim-m4" in run.data.tags["edgeqat.gate.reasons"] and M4_BUDGET in run.data.tags["edgeqat.gate.reasons"]
    assert "edgeqat.model.qat_int8" in run.data.tags  # the model is logged with the run, to look at

    with pytest.raises(GateFailed) as err:
        register(_params(), workspace=ws, uri=url)
    why = str(err.value)
    assert "sim-m4" in why and M4_BUDGET in why and "edgeqat recommend --device sim-m4" in why
    assert err.value.exit_code == 1
    assert {m["name"]: reg.versions(m["name"]) for m in reg.find_models(NAME)} == models
    assert not reg.client.search_model_versions(f"run_id='{tracked['run_id']}'")
    assert not (ws / "logs" / "registered.json").exists()


# --- the webhook receiver -------------------------------------------------------------------


class RunningReceiver:
    """`edgeqat webhook serve` in-process, which tests stop and start again on the same deploy folder."""

    def __init__(self, mlflow_url: str, reg, deploy: Path) -> None:
        self.mlflow_url, self.reg, self.deploy = mlflow_url, reg, deploy
        self.rcv = self.server = self.url = None

    def start(self, *, install: bool = True, port: int = 0, reconcile_interval: float = 0) -> float:
        """Listen (on a fresh port unless given), catch up, and with ``install`` point MLflow's
        webhook here; without it MLflow still delivers to the old, dead port: only reconcile acts."""
        from edgeqat.adapters.webhook.server import Receiver, make_server

        started = time.monotonic()
        self.rcv = Receiver(self.reg, CFG, self.deploy)
        self.server = make_server(self.rcv, SECRET, "127.0.0.1", port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        if install:
            res = cli(self.mlflow_url, "webhook", "install", "--url", self.url)
            assert res.exit_code == 0, res.output + repr(res.exception)
            time.sleep(1.5)  # the server's webhook cache TTL (1 s here)
        self.rcv.start(reconcile_interval)
        return started

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.rcv.close()


@pytest.fixture(scope="module")
def receiver(url, reg, deploy_dir):
    running = RunningReceiver(url, reg, deploy_dir)
    running.start()
    yield running
    running.stop()


def _actions(reg, version=None):
    return [h["action"] for h in reg.history(NAME) if h.get("alias") == "champion" and (version is None or h["version"] == version)]


def test_webhook_exports_a_champion_set_in_the_ui(url, reg, receiver, v_good):
    target = reg.alias_version(NAME, "challenger")
    assert target != v_good["version"] and reg.alias_version(NAME, "champion") == v_good["version"]
    set_alias_rest(url, target)
    wait_for(lambda: "deployed" in _actions(reg, target), what=f"the receiver to deploy version {target}")
    exported = receiver.deploy / "qat_int8.tflite"
    assert sha256_file(exported) == reg.version(NAME, target)["tags"]["sha256"]
    assert read_json(receiver.deploy / "export.json")["version"] == target
    ui = [h for h in reg.history(NAME) if h.get("action") == "ui" and h["version"] == target][-1]
    assert ui["previous"] == v_good["version"] and "MLflow" in ui["by"]
    assert reg.alias_version(NAME, "champion") == target
    assert not receiver.rcv.errors


def assert_rejected(reg, name: str, version: str, why: str) -> None:
    """The rejection shows where the user clicked: the description's first line, and a tag."""
    v = reg.version(name, version)
    first, _, rest = v["description"].partition("\n")
    assert first.startswith("**edgeqat rejected this version as champion** on ") and " UTC: " in first, first
    assert why in first and why in v["tags"]["edgeqat.rejected"]
    assert "Recommended for" in rest or "| qat_int8 |" in rest  # the registered description is kept below


def test_webhook_reverts_a_ui_champion_that_fails_a_gate(url, reg, receiver, v_bad):
    previous = reg.alias_version(NAME, "champion")
    set_alias_rest(url, v_bad["version"])
    wait_for(lambda: "revert" in _actions(reg, previous) and reg.alias_version(NAME, "champion") == previous,
             what="the receiver to revert the champion")
    receiver.rcv.drain()  # the version is annotated after the revert
    assert_rejected(reg, NAME, v_bad["version"], "device 'sim-m4' failed: arena 300 KB > 256 KB")
    assert "rejected" in _actions(reg, v_bad["version"])
    assert read_json(receiver.deploy / "export.json")["version"] == previous  # never deployed v_bad
    assert not receiver.rcv.errors


def test_a_request_with_a_bad_signature_changes_nothing(url, reg, receiver, v_bad):
    from edgeqat.adapters.webhook.server import sign

    before = (reg.alias_version(NAME, "champion"), len(reg.history(NAME)), (receiver.deploy / "export.json").read_bytes())
    body = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "now",
                       "data": {"name": NAME, "alias": "champion", "version": v_bad["version"]}}).encode()
    ts = str(int(time.time()))
    for headers in ({"X-MLflow-Signature": sign("not-the-secret", "x1", ts, body), "X-MLflow-Timestamp": ts, "X-MLflow-Delivery-Id": "x1"},
                    {"X-MLflow-Timestamp": ts, "X-MLflow-Delivery-Id": "x2"}):
        req = urllib.request.Request(receiver.url, data=body, method="POST", headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401
    receiver.rcv.drain()
    time.sleep(0.5)
    assert (reg.alias_version(NAME, "champion"), len(reg.history(NAME)), (receiver.deploy / "export.json").read_bytes()) == before


def test_rollback_restores_the_previous_champion(url, reg, receiver, v_good):
    current = reg.alias_version(NAME, "champion")
    assert current != v_good["version"]
    res = cli(url, "rollback", "--reason", "field reports")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert reg.alias_version(NAME, "champion") == v_good["version"]
    # The receiver sees the move, recognises it as edgeqat's own, and deploys it.
    wait_for(lambda: read_json(receiver.deploy / "export.json")["version"] == v_good["version"],
             what="the rolled-back version to be deployed")
    hist = cli(url, "history")
    assert re.search(rf" champion +rollback +{v_good['version']} +{current} +\S+ +field reports", hist.stdout), hist.stdout


def _export_json(receiver, device: str | None = None) -> dict:
    path = (receiver.deploy / device if device else receiver.deploy) / "export.json"
    return read_json(path) if path.is_file() else {}


def test_webhook_records_a_champion_removed_in_the_ui(url, reg, receiver, v_good):
    kept = reg.alias_version(NAME, "champion")
    before = sha256_file(receiver.deploy / "qat_int8.tflite")
    delete_alias_rest(url)
    wait_for(lambda: _export_json(receiver).get("champion_set") is False, what="the receiver to record the removal")
    doc = _export_json(receiver)
    assert doc["version"] == kept and "MLflow" in doc["champion_removed_by"] and doc["champion_removed_at"]
    assert sha256_file(receiver.deploy / "qat_int8.tflite") == before  # the devices keep the last accepted model
    removed = [h for h in reg.history(NAME) if h.get("action") == "removed"][-1]
    assert removed["previous"] == kept and removed["version"] is None and "webhook" in removed["by"]
    assert re.search(r" champion +removed +- ", cli(url, "history", "--alias", "champion").stdout)
    # promote again: deployed, and the folder says a champion is set
    res = cli(url, "promote", v_good["version"], "--reason", "after the removal")
    assert res.exit_code == 0, res.output + repr(res.exception)
    wait_for(lambda: _export_json(receiver).get("champion_set") is True, what="the new champion to be deployed")
    assert _export_json(receiver)["version"] == v_good["version"] and not receiver.rcv.errors


def test_a_version_registered_in_the_ui_gets_no_alias_through_the_receiver(url, reg, receiver, v_good):
    """The MLflow UI's "Register model" button on a LoggedModel's page: a version from the very
    model edgeqat registered, without the measurements register tags. As champion it fails the
    same gates, so the receiver puts the champion back."""
    previous = reg.alias_version(NAME, "champion")
    model_id = _logged_model_of(reg, NAME, v_good["version"])
    mv = reg.client.create_model_version(NAME, f"models:/{model_id}", run_id=v_good["run_id"], model_id=model_id)
    clicked = str(mv.version)
    _logged_model_of(reg, NAME, clicked)  # the server links it to the LoggedModel like any version
    set_alias_rest(url, clicked)
    wait_for(lambda: "revert" in _actions(reg, previous) and reg.alias_version(NAME, "champion") == previous,
             what="the receiver to revert the champion set on a UI-registered version")
    receiver.rcv.drain()
    v = reg.version(NAME, clicked)
    assert "no accuracy tag: not registered by edgeqat" in v["tags"]["edgeqat.rejected"]
    assert v["description"].startswith("**edgeqat rejected this version as champion** on ")
    assert _export_json(receiver)["version"] == previous and not receiver.rcv.errors


def test_a_passing_champion_set_while_the_receiver_was_down_is_exported_on_start(url, reg, receiver, v_good):
    target = reg.alias_version(NAME, "challenger")
    assert target != v_good["version"] and reg.alias_version(NAME, "champion") == v_good["version"]
    receiver.stop()
    set_alias_rest(url, target)  # MLflow's delivery goes nowhere (it retries ~7 s, then drops it)
    started = receiver.start(install=False)
    wait_for(lambda: _export_json(receiver).get("version") == target, what="reconcile to export the new champion")
    delay = time.monotonic() - started
    print(f"\nreconcile delay (receiver start -> champion exported): {delay:.2f} s")
    assert sha256_file(receiver.deploy / "qat_int8.tflite") == reg.version(NAME, target)["tags"]["sha256"]
    ui = [h for h in reg.history(NAME) if h.get("action") == "ui"][-1]
    assert ui["version"] == target and ui["previous"] == v_good["version"] and "reconcile" in ui["by"]
    receiver.rcv.drain()
    assert not receiver.rcv.errors


def test_a_failing_champion_set_while_the_receiver_was_down_is_reverted_on_start(url, reg, receiver, v_bad):
    previous = reg.alias_version(NAME, "champion")
    receiver.stop()
    set_alias_rest(url, v_bad["version"])
    started = receiver.start(install=False)
    wait_for(lambda: reg.alias_version(NAME, "champion") == previous, what="reconcile to revert the champion")
    print(f"\nreconcile delay (receiver start -> failing champion reverted): {time.monotonic() - started:.2f} s")
    receiver.rcv.drain()
    assert_rejected(reg, NAME, v_bad["version"], "device 'sim-m4' failed: arena 300 KB > 256 KB")
    assert _export_json(receiver)["version"] == previous and _export_json(receiver)["champion_set"] is True
    assert [h["action"] for h in reg.history(NAME) if h.get("alias") == "champion"][-2:] == ["rejected", "revert"]
    assert not receiver.rcv.errors


def test_a_champion_removed_while_the_receiver_was_down_is_recorded_on_start(url, reg, receiver):
    kept = reg.alias_version(NAME, "champion")
    receiver.stop()
    delete_alias_rest(url)
    receiver.start(install=False)
    receiver.rcv.drain()
    doc = _export_json(receiver)
    assert doc["champion_set"] is False and doc["version"] == kept and (receiver.deploy / doc["file"]).is_file()
    removed = [h for h in reg.history(NAME) if h.get("action") == "removed"][-1]
    assert removed["previous"] == kept and "reconcile" in removed["by"]


def test_a_lost_delivery_is_caught_by_the_periodic_reconcile(url, reg, receiver, v_good):
    receiver.stop()
    receiver.start(install=False, reconcile_interval=1)  # MLflow still delivers to a dead port
    res = cli(url, "promote", v_good["version"], "--reason", "restore after the removal")
    assert res.exit_code == 0, res.output + repr(res.exception)
    wait_for(lambda: _export_json(receiver).get("champion_set") is True, timeout=15,
             what="the periodic reconcile to deploy the promoted version")
    assert _export_json(receiver)["version"] == v_good["version"] and not receiver.rcv.errors


def test_a_delivery_replayed_after_a_restart_changes_nothing(url, reg, receiver, v_good):
    from edgeqat.lifecycle.receiver_state import STATE_NAME
    from edgeqat.adapters.webhook.server import sign

    receiver.stop()
    receiver.start(install=True)  # MLflow delivers here again
    target = reg.alias_version(NAME, "challenger")
    delivered = read_json(receiver.deploy / STATE_NAME)["deliveries"]
    set_alias_rest(url, target)
    wait_for(lambda: _export_json(receiver).get("version") == target, what="the webhook to deploy the new champion")
    wait_for(lambda: read_json(receiver.deploy / STATE_NAME)["deliveries"] != delivered, what="MLflow's delivery")
    receiver.rcv.drain()
    delivery = read_json(receiver.deploy / STATE_NAME)["deliveries"][-1]  # MLflow's own delivery id
    port = receiver.server.server_address[1]
    receiver.stop()
    receiver.start(install=False, port=port)  # the same address MLflow knows
    receiver.rcv.drain()
    before = (len(reg.history(NAME)), (receiver.deploy / "export.json").read_bytes(),
              (receiver.deploy / "qat_int8.tflite").stat().st_mtime_ns)
    raw = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "now",
                      "data": {"name": NAME, "alias": "champion", "version": target}}).encode()
    ts = str(int(time.time()))
    req = urllib.request.Request(receiver.url, data=raw, method="POST", headers={
        "Content-Type": "application/json", "X-MLflow-Signature": sign(SECRET, delivery, ts, raw),
        "X-MLflow-Timestamp": ts, "X-MLflow-Delivery-Id": delivery})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["message"] == "duplicate delivery, ignored"
    receiver.rcv.drain()
    assert (len(reg.history(NAME)), (receiver.deploy / "export.json").read_bytes(),
            (receiver.deploy / "qat_int8.tflite").stat().st_mtime_ns) == before
    assert not receiver.rcv.errors


DEVICE = "cortex_m7"
DNAME = f"{NAME}-{DEVICE}"


def _failing_device_version(reg, name: str, like: str, why: str) -> str:
    """A version of per-device model ``name`` whose device verdict failed: the register step never
    makes one (a device's model is recommended only when it fits every budget), so this one is
    created directly, from the LoggedModel and run of version ``like`` and with its tag keys."""
    mv = reg.client.get_model_version(name, like)
    device = mv.tags["device"]
    tags = {**mv.tags, f"device.{device}.passed": "false", f"device.{device}.reasons": why,
            "gates.passed": "false", "gates.reasons": f"device '{device}' failed: {why}"}
    return reg.create_version(name, _logged_model_of(reg, name, like), mv.run_id, tags,
                              f"Recommended for `{device}` (failing: {why}).")


@pytest.fixture(scope="module")
def per_device(built, url, reg, tmp_path_factory):
    """<NAME>-cortex_m7, versions good1, bad, good2: good1 and good2 registered by two executions
    recommending a model for the device, bad failing its device budget."""
    tmp = tmp_path_factory.mktemp("per-device")
    good1 = _track_register(url, _workspace(built, tmp / "good1", recommend={DEVICE: 0.9}))["recommended"][DEVICE]
    bad = _failing_device_version(reg, DNAME, good1["version"], "arena 600 KB > 512 KB")
    good2 = _track_register(url, _workspace(built, tmp / "good2", recommend={DEVICE: 0.91}))["recommended"][DEVICE]
    assert good1["gates_passed"] and good2["gates_passed"] and good2["challenger"]
    return {"good1": good1["version"], "bad": bad, "good2": good2["version"]}


def test_a_per_device_model_is_promoted_on_its_own_gates_and_deployed_to_its_folder(url, reg, receiver, per_device):
    from edgeqat.lifecycle.promotion import PromotionRefused

    main_before = (receiver.deploy / "export.json").read_bytes()
    res = cli(url, "promote", "--model", DNAME, per_device["good1"], "--reason", "first cortex-m7 model")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert reg.alias_version(DNAME, "champion") == per_device["good1"]
    wait_for(lambda: _export_json(receiver, DEVICE).get("version") == per_device["good1"],
             what=f"the receiver to deploy {DNAME} to {DEVICE}/")
    doc = _export_json(receiver, DEVICE)
    assert doc["model_name"] == DNAME and doc["device"] == DEVICE and doc["champion_set"] is True
    assert sha256_file(receiver.deploy / DEVICE / f"{DEVICE}.tflite") == reg.version(DNAME, per_device["good1"])["tags"]["sha256"]
    assert (receiver.deploy / "export.json").read_bytes() == main_before  # the main model's folder is untouched

    res = cli(url, "promote", "--model", DNAME, per_device["bad"])
    assert isinstance(res.exception, PromotionRefused)
    assert f"{DNAME} version {per_device['bad']}" in str(res.exception)
    assert f"device '{DEVICE}' failed: arena 600 KB > 512 KB" in str(res.exception)
    assert reg.alias_version(DNAME, "champion") == per_device["good1"]
    assert re.search(r" champion +refused ", cli(url, "history", "--model", DNAME).stdout)
    assert not receiver.rcv.errors


def test_the_receiver_gates_a_per_device_champion_set_in_the_ui(url, reg, receiver, per_device):
    set_alias_rest(url, per_device["good2"], name=DNAME)
    wait_for(lambda: _export_json(receiver, DEVICE).get("version") == per_device["good2"],
             what=f"the receiver to deploy {DNAME} version {per_device['good2']}")
    set_alias_rest(url, per_device["bad"], name=DNAME)
    wait_for(lambda: "revert" in [h["action"] for h in reg.history(DNAME)] and
             reg.alias_version(DNAME, "champion") == per_device["good2"], what=f"the receiver to revert {DNAME}")
    receiver.rcv.drain()
    assert_rejected(reg, DNAME, per_device["bad"], f"device '{DEVICE}' failed: arena 600 KB > 512 KB")
    assert _export_json(receiver, DEVICE)["version"] == per_device["good2"] and not receiver.rcv.errors
    hist = cli(url, "history").stdout.splitlines()  # every edgeqat model, one section each
    assert f"{NAME}:" in hist and f"{DNAME}:" in hist


def test_export_of_a_per_device_model_defaults_to_its_device_and_folder(url, reg, receiver, per_device, deploy_dir, tmp_path):
    res = cli(url, "export", "--model", DNAME)  # no --out, no --device
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert f"{deploy_dir / DEVICE / DEVICE}.tflite ({DNAME} version " in res.output  # stderr has progress bars
    res = cli(url, "export", "--model", DNAME, "--version", per_device["good1"], "--out", str(tmp_path))
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = read_json(tmp_path / "export.json")
    assert doc["device"] == DEVICE and doc["version"] == per_device["good1"] and "champion_set" not in doc
    reg.ensure_model(f"{NAME}-unrelated")
    for name, why in ((f"{NAME}-unrelated", "is not managed by edgeqat"), (f"{NAME}-missing", "not found")):
        res = cli(url, "export", "--model", name, "--out", str(tmp_path / "x"))
        assert isinstance(res.exception, EdgeqatError) and f"'{name}'" in str(res.exception), res.output
        assert why in str(res.exception)


def test_the_receiver_ships_vela_output_for_an_ethos_u_model_and_a_restart_keeps_it(built, url, reg, receiver,
                                                                                     tmp_path):
    from edgeqat.devices.vela import compiled_ops

    device = "ethos_u55_128"
    version = _track_register(url, _workspace(built, tmp_path, recommend={device: 0.9}))["recommended"][device]["version"]
    set_alias_rest(url, version, name=f"{NAME}-{device}")
    wait_for(lambda: _export_json(receiver, device).get("version") == version, what=f"the receiver to deploy {device}")
    doc = _export_json(receiver, device)
    shipped = receiver.deploy / device / doc["file"]
    assert doc["file"] == f"{device}_vela.tflite" and doc["device"] == device and doc["sha256"] == sha256_file(shipped)
    assert "ethos-u" in compiled_ops(shipped.read_bytes())  # Vela's NPU op: the compiled file, not the registered one
    receiver.rcv.drain()
    written = shipped.stat().st_mtime_ns
    port = receiver.server.server_address[1]
    receiver.stop()
    receiver.start(install=False, port=port)
    receiver.rcv.drain()
    assert shipped.stat().st_mtime_ns == written  # the state knows the compiled file: nothing to catch up
    assert not receiver.rcv.errors


def test_auto_promote_moves_champion_only_for_a_version_passing_every_gate(built, url, reg, tmp_path):
    cfg = RegisterConfig(**{**CFG.model_dump(), "model_name": f"{NAME}-auto", "auto_promote": True})
    first = _track_register(url, _workspace(built, tmp_path / "a", "good"), cfg)
    assert first["champion"] and reg.alias_version(cfg.model_name, "champion") == first["version"]
    failing = _track_register(url, _workspace(built, tmp_path / "b", "bad"), cfg)
    assert not failing["champion"] and reg.alias_version(cfg.model_name, "champion") == first["version"]
    auto = [h for h in reg.history(cfg.model_name) if h.get("action") == "auto"]
    assert [h["version"] for h in auto] == [first["version"]]


# --- failure ----------------------------------------------------------------------------------


def test_unreachable_mlflow_fails_clearly_and_leaves_local_outputs_intact(built, tmp_path):
    from edgeqat.steps.register import register
    from edgeqat.steps.track import track

    ws = _workspace(built, tmp_path)
    before = {p: sha256_file(p) for p in sorted(ws.rglob("*")) if p.is_file()}
    dead = f"http://127.0.0.1:{free_port()}"
    for step in (track, register):
        started = time.monotonic()
        with pytest.raises(EdgeqatError, match=f"MLflow tracking server {dead} is unreachable"):
            step(_params(), workspace=ws, uri=dead)
        assert time.monotonic() - started < 30, f"{step.__name__}: slow to fail"  # no client retries
    assert {p: sha256_file(p) for p in sorted(ws.rglob("*")) if p.is_file()} == before  # no tracked/registered.json


@pytest.mark.slow
def test_mlflow_models_serve_predicts_on_raw_images(url, v_good, built, tmp_path):
    """`mlflow models serve --env-manager local` on the registered version, no environment rebuilt."""
    from edgeqat.data.shards import load_split_arrays
    from edgeqat.quantization.runtime import TFLiteClassifier

    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_TRACKING_URI": url}
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}/{v_good['version']}",
                             "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        def up():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    return True
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                return False

        wait_for(up, timeout=240, what="mlflow models serve")
        x, _ = load_split_arrays(built["prepared"] / "test")
        x = (x[..., None] if x.ndim == 3 else x)[:5]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", method="POST",
                                     data=json.dumps({"inputs": x.tolist()}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            preds = json.loads(resp.read())["predictions"]
        d = built["dir"]
        card = read_json(d / "tflite" / "model_card.json")
        clf = TFLiteClassifier(d / "tflite" / "qat_int8.tflite")
        n = card["normalization"]
        expect = [int(np.argmax(clf((img.astype(np.float32) - n["mean"]) / n["std"]))) for img in x]
        assert [p["class_index"] for p in preds] == expect
        assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in preds)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=20)
        log.close()


def test_a_per_device_model_carries_its_own_device_validation_and_its_gate_reads_it(built, url, reg, tmp_path):
    """The verdict of the recommend stage's validation of the file on its device (test split) is
    what the version carries: one that failed there is registered, gate failed, no challenger."""
    why = "accuracy 0.7000 is 0.2500 below the reference 0.9500 (> validate.max_accuracy_drop 0.02)"
    ws = _workspace(built, tmp_path, recommend={"sim-m7": {"accuracy": 0.7, "passed": False, "reasons": [why]}})
    rec = _track_register(url, ws)["recommended"]["sim-m7"]
    v = reg.client.get_model_version(f"{CFG.model_name}-sim-m7", rec["version"])
    assert v.tags["device.sim-m7.passed"] == "false" and v.tags["device.sim-m7.reasons"] == why
    assert float(v.tags["accuracy"]) == pytest.approx(0.7) and v.tags["accuracy_split"] == "test"
    assert not rec["gates_passed"] and not rec["challenger"] and v.tags["gates.passed"] == "false"
    # a file that is not the one validated is refused, naming it, before anything is registered
    from edgeqat.steps.register import register

    (ws / "models" / "recommended" / "sim-m7.tflite").write_bytes(b"TFL3" * 64)
    versions = len(reg.all_versions(CFG.model_name))
    with pytest.raises(ModelError, match=r"sim-m7.tflite: no device validation of this file"):
        register(_params(), workspace=ws, uri=url)
    assert len(reg.all_versions(CFG.model_name)) == versions


def test_recommended_models_register_per_device_and_a_miss_registers_nothing(built, url, reg, tmp_path):
    ws = _workspace(built, tmp_path, recommend={"sim-m7": 0.9, "sim-tiny": None})
    out = _track_register(url, ws)
    rec = out["recommended"]
    assert set(rec) == {"sim-m7", "sim-tiny"} and rec["sim-tiny"] is None
    name = f"{CFG.model_name}-sim-m7"
    assert rec["sim-m7"]["model_name"] == name and rec["sim-m7"]["new"] and rec["sim-m7"]["gates_passed"]
    assert read_json(ws / "logs" / "registered.json")["recommended"] == rec
    names = {m["name"] for m in reg.find_models(CFG.model_name)}
    assert name in names and f"{CFG.model_name}-sim-tiny" not in names
    model_tags = reg.registered_model(name)["tags"]
    assert (model_tags["edgeqat.managed"], model_tags["edgeqat.device"], model_tags["edgeqat.base_model"]) == \
        ("true", "sim-m7", NAME)
    v = reg.client.get_model_version_by_alias(name, "challenger")
    assert v.version == rec["sim-m7"]["version"] and v.tags["strategy"] == "qat_int8" and v.tags["device"] == "sim-m7"
    # the main model's tag keys, its own device the only required one, traced to the same run
    run_id = out["tracked"]["run_id"]
    run = reg.client.get_run(run_id)
    assert v.run_id == run_id == rec["sim-m7"]["run_id"] == out["run_id"] and v.tags["mlflow_run_id"] == run_id
    model_id = _logged_model_of(reg, name, v.version)
    assert model_id == run.data.tags["edgeqat.model.recommended-sim-m7"] != run.data.tags["edgeqat.model.qat_int8"]
    assert model_id in {o.model_id for o in run.outputs.model_outputs}
    assert (v.tags["devices"], v.tags["required_devices"], v.tags["device.sim-m7.passed"]) == ("sim-m7", "sim-m7", "true")
    assert v.tags["sha256"] == sha256_file(ws / "models" / "recommended" / "sim-m7.tflite")
    assert float(v.tags["accuracy"]) == pytest.approx(0.9) and v.tags["gates.passed"] == "true"
    main = reg.version(NAME, out["version"])["tags"]
    keys = {"accuracy", "accuracy_drop", "size_bytes", "gzip_bytes", "sha256", "git_commit", "params_sha256",
            "data_sha256", "mlflow_run_id", "devices", "required_devices", "gates.passed"}
    assert keys <= set(main) and keys <= set(v.tags)
