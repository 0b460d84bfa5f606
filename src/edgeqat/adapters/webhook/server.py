"""The webhook receiver's HTTP side: MLflow tells us an alias moved; :mod:`edgeqat.adapters.webhook.receiver` acts.

MLflow 3 (SQL-backed server) POSTs JSON ``{"entity", "action", "timestamp", "data"}`` with
headers ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` and, when the webhook has a
secret, ``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``
(``mlflow/webhooks/delivery.py``). Anything unsigned, wrongly signed, older than
:data:`MAX_AGE_S`, replayed, or malformed is refused before it is looked at.

Events listened for: ``model_version_alias.created`` and ``.deleted``
(:data:`edgeqat.adapters.webhook.receiver.EVENTS`), for ``register.model_name`` and its per-device models.
What happens then (gate, export, revert, record a removal) is :class:`edgeqat.adapters.webhook.receiver.Receiver`'s
job, which also catches up on moves whose delivery never arrived. Delivery ids are
remembered in the deploy folder, so a replay is refused after a restart too.

Requests are verified on the HTTP thread and processed one at a time by a worker thread,
so MLflow's delivery never waits on a download and two moves are never handled at once.
The HTTP side is bounded: a fixed pool of :data:`HTTP_WORKERS` threads, at most
:data:`MAX_PENDING` connections in flight (more are closed at once), and a
:data:`SOCKET_TIMEOUT_S` read/write timeout, so stalled clients cannot pile up threads; a
client that hangs up or times out is one log line, not a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgeqat.errors import EdgeqatError
from edgeqat.io import log
from edgeqat.adapters.webhook.receiver import CREATED, EVENTS, Receiver

__all__ = ["EVENTS", "Receiver", "Refused", "check_secret", "make_server", "sign", "verify"]

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
MAX_AGE_S = 300
MAX_BODY = 1 << 20
SECRET_ENV = "EDGEQAT_WEBHOOK_SECRET"
MIN_SECRET_LEN = 16
HTTP_WORKERS = 4
MAX_PENDING = 16
SOCKET_TIMEOUT_S = 10.0


def check_secret(secret: str | None, command: str) -> str:
    """The one rule for `webhook serve` and `webhook install`: a secret of 16+ characters."""
    if not secret or len(secret) < MIN_SECRET_LEN:
        raise EdgeqatError(f"webhook {command}: set {SECRET_ENV} to a secret of at least {MIN_SECRET_LEN} characters "
                           f"(the same one for `edgeqat webhook install` and `serve`)"
                           + (f"; it has {len(secret)}" if secret else ""))
    return secret


class Refused(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The signature MLflow sends (``v1,`` + base64 HMAC-SHA256)."""
    mac = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: Any, body: bytes, now: float | None = None) -> dict[str, Any]:
    """The parsed event if the request is authentic, fresh and well-formed; else :class:`Refused`."""
    sig, ts, did = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER), headers.get(DELIVERY_HEADER)
    if not sig or not ts or not did:
        raise Refused(401, f"unsigned request (needs {SIGNATURE_HEADER}, {TIMESTAMP_HEADER}, {DELIVERY_HEADER})")
    expected = sign(secret, did, ts, body)
    # Several signatures may be space-separated (secret rotation in Standard Webhooks).
    if not any(hmac.compare_digest(expected, s.strip()) for s in sig.split(" ") if s.strip()):
        raise Refused(401, "bad signature")
    try:
        age = abs((now or time.time()) - int(ts))
    except ValueError:
        raise Refused(401, f"bad {TIMESTAMP_HEADER} {ts!r}") from None
    if age > MAX_AGE_S:
        raise Refused(401, f"stale request ({age:.0f} s old > {MAX_AGE_S} s)")
    try:
        event = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(400, "body is not JSON") from None
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict) or not isinstance(event.get("entity"), str) or not isinstance(event.get("action"), str):
        raise Refused(400, "not an MLflow webhook event (needs entity, action, data)")
    key = f"{event['entity']}.{event['action']}"
    if key in EVENTS:
        needs = ("name", "alias", "version") if key == CREATED else ("name", "alias")
        if not all(isinstance(data.get(k), str) and data.get(k) for k in needs):
            raise Refused(400, f"{key} needs " + ", ".join(f"data.{k}" for k in needs))
    event["delivery_id"] = did
    return event


class BoundedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on a fixed thread pool, with a cap on connections in flight."""

    def __init__(self, *args: Any, workers: int = HTTP_WORKERS, max_pending: int = MAX_PENDING, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgeqat-webhook-http")
        self.slots, self.max_pending = threading.BoundedSemaphore(max_pending), max_pending

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            log(f"webhook: {client_address[0]}: too many connections in flight (> {self.max_pending}); closed")
            self.shutdown_request(request)
            return
        request.settimeout(SOCKET_TIMEOUT_S)
        self.pool.submit(self._serve_one, request, client_address)

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)  # handles, logs errors, closes
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback; a client hanging up is routine, so one line
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError, socket.timeout)):
            log(f"webhook: {client_address[0]}: connection dropped ({type(err).__name__}: {err})")
        else:
            log(f"webhook: {client_address[0]}: request failed: {type(err).__name__}: {err}")

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_server(receiver: Receiver, secret: str, host: str = "127.0.0.1", port: int = 8765) -> BoundedHTTPServer:
    check_secret(secret, "serve")

    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT_S  # applied to the socket by StreamRequestHandler.setup

        def _reply(self, status: int, msg: str) -> None:
            body = json.dumps({"status": status, "message": msg}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._reply(400, "bad Content-Length")
            if length <= 0 or length > MAX_BODY:
                return self._reply(413 if length > MAX_BODY else 400, "empty or oversized body")
            body = self.rfile.read(length)
            if len(body) < length:  # the client hung up mid-body
                log(f"webhook: {self.client_address[0]}: body cut short ({len(body)} of {length} bytes); ignored")
                self.close_connection = True
                return
            try:
                event = verify(secret, self.headers, body)
            except Refused as r:
                log(f"webhook: refused a request from {self.client_address[0]}: {r.why}")
                return self._reply(r.status, r.why)
            try:
                outcome = receiver.accept(event)
            except (EdgeqatError, OSError) as err:  # the delivery id could not be persisted: let MLflow retry
                log(f"webhook: delivery {event['delivery_id']}: {err}")
                return self._reply(503, "cannot record the delivery; retry")
            self._reply(200, outcome)

        def do_GET(self) -> None:  # noqa: N802
            self._reply(200 if self.path == "/health" else 404, "ok" if self.path == "/health" else "POST events here")

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    return BoundedHTTPServer((host, port), Handler)
