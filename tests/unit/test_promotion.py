"""Promotion gates, the history's champion stack and webhook signature checks, without a server."""

from __future__ import annotations

import json
import time

import pytest
from conftest import REPO

from edgeqat.config import RegisterConfig
from edgeqat.lifecycle.gates import compare, static_gates
from edgeqat.lifecycle.promotion import champion_stack, history_rows
from edgeqat.adapters.webhook.server import Refused, sign, verify

GOOD = {"accuracy": "0.95", "accuracy_drop": "0.01", "size_bytes": "1000", "devices": "m4,pi",
        "device.m4.passed": "true", "device.pi.passed": "true"}


def test_a_version_within_every_threshold_passes():
    assert static_gates(GOOD, RegisterConfig()) == []


@pytest.mark.parametrize("tags, cfg, expect", [
    ({"accuracy_drop": "0.05"}, {}, "accuracy drop vs fp32 0.0500 > register.max_accuracy_drop 0.02"),
    ({"accuracy": "0.80"}, {"min_accuracy": 0.9}, "accuracy 0.8000 < register.min_accuracy 0.9"),
    ({"size_bytes": "5000"}, {"max_size_bytes": 2000}, "size 5,000 bytes > register.max_size_bytes 2,000"),
    ({"device.pi.passed": "false", "device.pi.reasons": "latency 90 ms > 50 ms"}, {}, "device 'pi' failed: latency 90 ms > 50 ms"),
    ({}, {"required_devices": ["m4", "esp32"]}, "required device 'esp32' was not validated"),
])
def test_each_gate_names_what_failed(tags, cfg, expect):
    assert static_gates({**GOOD, **tags}, RegisterConfig(**cfg)) == [expect]


def test_no_required_devices_ignores_device_verdicts():
    assert static_gates({**GOOD, "device.pi.passed": "false"}, RegisterConfig(required_devices=[])) == []


@pytest.mark.parametrize("metric, new, old, strict, worse", [
    ("accuracy", "0.90", "0.95", False, True),
    ("accuracy", "0.95", "0.95", False, False),   # promote: as good is enough
    ("accuracy", "0.95", "0.95", True, True),     # auto-promote: must beat it
    ("size_bytes", "900", "1000", True, False),   # smaller is better
    ("size_bytes", "1100", "1000", False, True),
])
def test_comparison_with_the_champion(metric, new, old, strict, worse):
    cfg = RegisterConfig(promote_metric=metric)
    got = compare({metric: new}, {"version": "3", "tags": {metric: old}}, cfg, strict)
    assert bool(got) == worse
    if worse:
        assert "champion version 3" in got[0]


def test_champion_stack_follows_promotions_rollbacks_and_reverts():
    h = [
        {"alias": "challenger", "action": "register", "version": "1"},
        {"alias": "champion", "action": "promote", "version": "1"},
        {"alias": "champion", "action": "promote", "version": "2"},
        {"alias": "champion", "action": "refused", "version": "9"},
        {"alias": "champion", "action": "ui", "version": "3"},
        {"alias": "champion", "action": "rollback", "version": "2"},
        {"alias": "champion", "action": "rejected", "version": "4"},
        {"alias": "champion", "action": "revert", "version": "2"},
        {"alias": "champion", "action": "deployed", "version": "2"},
    ]
    assert champion_stack(h) == ["1", "2"]  # a second rollback goes to 1, not back to 3
    assert champion_stack(h + [{"alias": "champion", "action": "rollback", "version": "1"}]) == ["1"]
    # A recorded move whose alias change MLflow refused is cancelled by its "abandoned" entry.
    undone = h + [{"alias": "champion", "action": "promote", "version": "5", "key": "k5"},
                  {"alias": "champion", "action": "abandoned", "version": "5", "undoes": "k5"}]
    assert champion_stack(undone) == ["1", "2"]
    rows = history_rows(h, "champion")
    assert "refused" in [r[2] for r in rows] and all(r[1] == "champion" for r in rows)
    assert len(rows) == len(h) - 1  # the challenger's move is not the champion's


SECRET = "s3cret-s3cret-s3cret"


def _request(body: dict, secret: str = SECRET, ts: int | None = None, did: str = "d-1"):
    raw = json.dumps(body).encode()
    ts = str(ts if ts is not None else int(time.time()))
    return {"X-MLflow-Signature": sign(secret, did, ts, raw), "X-MLflow-Timestamp": ts, "X-MLflow-Delivery-Id": did}, raw


EVENT = {"entity": "model_version_alias", "action": "created", "timestamp": "t",
         "data": {"name": "m", "alias": "champion", "version": "2"}}


def test_a_signed_mlflow_event_is_accepted():
    headers, raw = _request(EVENT)
    assert verify(SECRET, headers, raw)["data"]["version"] == "2"


def test_signature_matches_mlflows_own_implementation():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert sign(SECRET, "id", "123", b'{"a": 1}') == _generate_hmac_signature(SECRET, "id", "123", '{"a": 1}')


@pytest.mark.parametrize("mutate, status, why", [
    (lambda h, b: ({k: v for k, v in h.items() if k != "X-MLflow-Signature"}, b), 401, "unsigned"),
    (lambda h, b: ({**h, "X-MLflow-Signature": sign("wrong-secret", "d-1", h["X-MLflow-Timestamp"], b)}, b), 401, "bad signature"),
    (lambda h, b: (h, b.replace(b'"2"', b'"3"')), 401, "bad signature"),  # body tampered
    (lambda h, b: _request(EVENT, ts=int(time.time()) - 3600), 401, "stale"),
])
def test_unsigned_tampered_or_stale_requests_are_refused(mutate, status, why):
    headers, raw = mutate(*_request(EVENT))
    with pytest.raises(Refused) as err:
        verify(SECRET, headers, raw)
    assert err.value.status == status and why in err.value.why


def test_an_alias_removal_needs_no_version():
    removed = {"entity": "model_version_alias", "action": "deleted", "timestamp": "t", "data": {"name": "m", "alias": "champion"}}
    headers, raw = _request(removed)
    assert verify(SECRET, headers, raw)["data"] == {"name": "m", "alias": "champion"}


@pytest.mark.parametrize("body", [{"entity": "x"}, {"entity": "model_version_alias", "action": "created", "data": {"name": "m"}},
                                  {"entity": "model_version_alias", "action": "deleted", "data": {"name": "m"}}])
def test_malformed_events_are_refused(body):
    headers, raw = _request(body)
    with pytest.raises(Refused) as err:
        verify(SECRET, headers, raw)
    assert err.value.status == 400


@pytest.mark.parametrize("cmd", [["webhook", "serve"], ["webhook", "install"]])
def test_webhook_commands_refuse_to_run_without_a_secret(cmd, monkeypatch):
    from typer.testing import CliRunner

    from edgeqat.adapters.cli.app import app
    from edgeqat.errors import EdgeqatError

    monkeypatch.delenv("EDGEQAT_WEBHOOK_SECRET", raising=False)
    res = CliRunner().invoke(app, [*cmd, "--params", str(REPO / "params.yaml")])
    assert isinstance(res.exception, EdgeqatError) and "EDGEQAT_WEBHOOK_SECRET" in str(res.exception)
