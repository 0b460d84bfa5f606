"""The webhook receiver's HTTP side: MLflow tells us an alias moved; :mod:`edgeqat.lifecycle.receiver` acts.

MLflow 3 (SQL-backed server) POSTs JSON ``{"entity", "action", "timestamp", "data"}`` with
headers ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` and, when the webhook has a
secret, ``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``
(``mlflow/webhooks/delivery.py``). Anything unsigned, wrongly signed, older than
:data:`MAX_AGE_S`, replayed, or malformed is refused before it is looked at.

Events listened for: ``model_version_alias.created`` and ``.deleted``
(:data:`edgeqat.lifecycle.receiver.EVENTS`), for ``register.model_name`` and its per-device models.
What happens then (gate, export, revert, record a removal) is :class:`edgeqat.lifecycle.receiver.Receiver`'s
job, which also catches up on moves whose delivery never arrived. Delivery ids are
remembered in the deploy folder, so a replay is refused after a restart too.

Requests are read by one thread on non-blocking sockets and processed one at a time by a
worker thread, so MLflow's delivery never waits on a download and two moves are never
handled at once. A connection costs a socket, not a thread: a client that sends its request
slowly (a header line every few seconds) holds nothing the others need. Every request must
arrive whole, headers and body, within :data:`REQUEST_DEADLINE_S` of its connection; a
client may hold at most :data:`MAX_PER_CLIENT` connections and all clients together
:data:`MAX_CONNECTIONS` (more are closed at once). A client that hangs up or runs out of
time is one log line, not a traceback.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import io
import json
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPException, parse_headers
from typing import Any, Callable

from edgeqat.errors import EdgeqatError
from edgeqat.io import log
from edgeqat.lifecycle.receiver import CREATED, EVENTS, Receiver

__all__ = ["EVENTS", "Receiver", "Refused", "check_secret", "make_server", "sign", "verify"]

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
MAX_AGE_S = 300
MAX_BODY = 1 << 20
MAX_HEADER_BYTES = 16 << 10
SECRET_ENV = "EDGEQAT_WEBHOOK_SECRET"
MIN_SECRET_LEN = 16
REQUEST_DEADLINE_S = 10.0  # the whole request, headers and body, from the moment it connects
MAX_PER_CLIENT = 32
MAX_CONNECTIONS = 256


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


Handler = Callable[[str, str, Any, bytes, str], "tuple[int, str]"]


@dataclass
class _Conn:
    sock: socket.socket
    client: str
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    out: bytes = b""
    head: tuple[str, str, Any, int] | None = None  # method, path, headers, body length
    replying: bool = False


def _response(status: int, msg: str) -> bytes:
    from http import HTTPStatus

    body = json.dumps({"status": status, "message": msg}).encode()
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


class BoundedHTTPServer:
    """A small HTTP/1.1 server on one thread and non-blocking sockets: one request per
    connection, each whole within ``deadline`` seconds, at most ``max_per_client``
    connections per client address and ``max_connections`` in all. ``handle(method, path,
    headers, body, client)`` returns ``(status, message)``, sent back as JSON."""

    def __init__(self, address: tuple[str, int], handle: Handler, *, deadline: float | None = None,
                 max_per_client: int | None = None, max_connections: int | None = None) -> None:
        self.handle = handle
        self.deadline = REQUEST_DEADLINE_S if deadline is None else deadline
        self.max_per_client = MAX_PER_CLIENT if max_per_client is None else max_per_client
        self.max_connections = MAX_CONNECTIONS if max_connections is None else max_connections
        self.socket = socket.create_server(address, backlog=128)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.socket, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.conns: dict[int, _Conn] = {}
        self.per_client: dict[str, int] = {}
        self._refusing: set[str] = set()  # clients told about once, until they are under the limit again
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    # --- the loop ---------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                soonest = min((c.deadline for c in self.conns.values()), default=now + poll_interval)
                for key, mask in self.selector.select(max(0.0, min(poll_interval, soonest - now))):
                    try:
                        if key.data is None:
                            self._accept()
                        elif key.data == "wake":
                            self._wake_r.recv(64)
                        elif mask & selectors.EVENT_WRITE:
                            self._write(key.data)
                        else:
                            self._read(key.data)
                    except Exception as err:  # noqa: BLE001 - one connection's trouble never stops the loop
                        log(f"webhook: connection error: {type(err).__name__}: {err}")
                        if isinstance(key.data, _Conn):
                            self._close(key.data)
                self._expire(time.monotonic())
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (called from another thread) and wait for it."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._stopped.wait()

    def server_close(self) -> None:
        for c in list(self.conns.values()):
            self._close(c)
        for s in (self.socket, self._wake_r, self._wake_w):
            try:
                self.selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self.selector.close()

    # --- connections ------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # e.g. out of file descriptors: the others carry on
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    log(f"webhook: cannot accept a connection: {err.strerror}")
                return
            client = addr[0]
            full = len(self.conns) >= self.max_connections
            if full or self.per_client.get(client, 0) >= self.max_per_client:
                if client not in self._refusing:
                    self._refusing.add(client)
                    limit = (f"{self.max_connections} connections in all" if full
                             else f"{self.max_per_client} connections from one client")
                    log(f"webhook: {client}: over {limit}; further connections closed at once until it has fewer")
                sock.close()
                continue
            sock.setblocking(False)
            c = _Conn(sock, client, time.monotonic() + self.deadline)
            self.conns[sock.fileno()] = c
            self.per_client[client] = self.per_client.get(client, 0) + 1
            self.selector.register(sock, selectors.EVENT_READ, c)

    def _close(self, c: _Conn) -> None:
        if self.conns.pop(c.sock.fileno(), None) is None:
            return
        try:
            self.selector.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        n = self.per_client.get(c.client, 1) - 1
        if n <= 0:
            self.per_client.pop(c.client, None)
        else:
            self.per_client[c.client] = n
        if n < self.max_per_client and len(self.conns) < self.max_connections:
            self._refusing.discard(c.client)

    def _expire(self, now: float) -> None:
        for c in [c for c in self.conns.values() if c.deadline <= now]:
            if not c.replying:
                log(f"webhook: {c.client}: request not complete within {self.deadline:g} s "
                    f"({len(c.data)} bytes received); closed")
            self._close(c)

    def _read(self, c: _Conn) -> None:
        try:
            chunk = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log(f"webhook: {c.client}: connection dropped ({type(err).__name__}: {err})")
            return self._close(c)
        if not chunk:
            log(f"webhook: {c.client}: hung up before the request was complete ({len(c.data)} bytes received)")
            return self._close(c)
        c.data += chunk
        if c.head is None:
            end = c.data.find(b"\r\n\r\n")
            if end < 0:
                if len(c.data) > MAX_HEADER_BYTES:
                    self._reply(c, 431, f"headers over {MAX_HEADER_BYTES} bytes")
                return
            try:
                c.head = self._parse_head(bytes(c.data[:end + 4]))
            except ValueError as err:
                return self._reply(c, 400, str(err))
            del c.data[:end + 4]
        method, path, headers, length = c.head
        if length > MAX_BODY:
            return self._reply(c, 413, "empty or oversized body")
        if len(c.data) < length:
            return
        try:
            status, msg = self.handle(method, path, headers, bytes(c.data[:length]), c.client)
        except Exception as err:  # noqa: BLE001 - one line, and the server keeps serving
            log(f"webhook: {c.client}: request failed: {type(err).__name__}: {err}")
            status, msg = 500, "internal error"
        self._reply(c, status, msg)

    @staticmethod
    def _parse_head(raw: bytes) -> tuple[str, str, Any, int]:
        line, _, rest = raw.partition(b"\r\n")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise ValueError("bad request line")
        try:
            headers = parse_headers(io.BytesIO(rest))
        except HTTPException as err:
            raise ValueError(f"bad headers: {err}") from None
        if headers.get("Transfer-Encoding"):
            raise ValueError("chunked bodies are not accepted; send Content-Length")
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            raise ValueError("bad Content-Length") from None
        if length < 0:
            raise ValueError("bad Content-Length")
        return parts[0], parts[1], headers, length

    def _reply(self, c: _Conn, status: int, msg: str) -> None:
        c.out, c.replying = _response(status, msg), True
        c.deadline = time.monotonic() + self.deadline  # time to take the answer, then the connection goes
        self.selector.modify(c.sock, selectors.EVENT_WRITE, c)
        self._write(c)

    def _write(self, c: _Conn) -> None:
        try:
            sent = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._close(c)
        c.out = c.out[sent:]
        if not c.out:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._close(c)


def make_server(receiver: Receiver, secret: str, host: str = "127.0.0.1", port: int = 8765, *,
                deadline: float | None = None, max_per_client: int | None = None) -> BoundedHTTPServer:
    check_secret(secret, "serve")

    def handle(method: str, path: str, headers: Any, body: bytes, client: str) -> tuple[int, str]:
        if method == "GET":
            return (200, "ok") if path == "/health" else (404, "POST events here")
        if method != "POST":
            return 405, "GET /health or POST events"
        if not body:
            return 400, "empty or oversized body"
        try:
            event = verify(secret, headers, body)
        except Refused as r:
            log(f"webhook: refused a request from {client}: {r.why}")
            return r.status, r.why
        try:
            return 200, receiver.accept(event)
        except (EdgeqatError, OSError) as err:  # the delivery id could not be persisted: let MLflow retry
            log(f"webhook: delivery {event['delivery_id']}: {err}")
            return 503, "cannot record the delivery; retry"

    return BoundedHTTPServer((host, port), handle, deadline=deadline, max_per_client=max_per_client)
