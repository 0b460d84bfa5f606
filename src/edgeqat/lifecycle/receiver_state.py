"""What the webhook receiver has deployed and which deliveries it has processed, on disk.

One JSON file in the deploy folder, ``<deploy_dir>/.edgeqat-receiver.json``::

    {"format": 1,
     "models": {"<registered model>": {
         "device": "cortex_m7" | null,      # null: the main classifier
         "champion": "7" | null,            # where the alias was when last settled (null: removed)
         "deployed": {"version": "7", "sha256": "...", "file": "cortex_m7/cortex_m7.tflite", "at": "<utc>"},
         "updated_at": "<utc>"}},
     "deliveries": ["<X-MLflow-Delivery-Id>", ...]}   # oldest first, the last MAX_DELIVERIES

One receiver per deploy folder: :func:`lock_deploy_folder` holds an advisory lock on
``<deploy_dir>/.edgeqat-receiver.lock`` for the receiver's life, so a second one started on
the same folder is refused instead of racing the first over the files and this state.

Every change is written at once with :func:`edgeqat.io.write_json` (temporary file +
rename), so a restart, or a crash mid-write, finds the old state or the new one, never
half of one. A replayed delivery id is therefore refused after a restart as well.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeqat.errors import DataError, EdgeqatError
from edgeqat.io import contained, read_json, sha256_file, write_json

STATE_NAME = ".edgeqat-receiver.json"
LOCK_NAME = ".edgeqat-receiver.lock"
FORMAT = 1
MAX_DELIVERIES = 10_000


class ReceiverStateError(EdgeqatError):
    """The state file is unreadable or not a receiver state."""


def lock_deploy_folder(deploy_dir: str | Path) -> Any:
    """Hold the deploy folder for this process (released when the returned file is closed,
    or the process ends); refused with who holds it if another receiver does."""
    root = Path(deploy_dir)
    root.mkdir(parents=True, exist_ok=True)
    f = open(root / LOCK_NAME, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ReceiverStateError(f"{root}: deploy folder in use by another receiver ({holder}); run one receiver per "
                                 "deploy folder (stop that one, or give this one another --deploy-dir)") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ReceiverState:
    """Thread-safe; every mutating call is persisted before it returns."""

    def __init__(self, deploy_dir: str | Path, max_deliveries: int = MAX_DELIVERIES) -> None:
        self.root = Path(deploy_dir)
        self.path = self.root / STATE_NAME
        self.max_deliveries = max_deliveries
        self.lock = threading.RLock()
        self.deliveries: OrderedDict[str, None] = OrderedDict()
        self.models: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            doc = read_json(self.path)
        except DataError as err:
            raise ReceiverStateError(f"receiver state {err}; move it aside to start afresh "
                                     "(every watched champion is then re-checked and re-exported)") from None
        if (not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("models"), dict)
                or not isinstance(doc.get("deliveries"), list)):
            raise ReceiverStateError(f"{self.path}: not an edgeqat receiver state (format {FORMAT}); move it aside "
                                     "to start afresh")
        self.models = doc["models"]
        self.deliveries = OrderedDict((str(d), None) for d in doc["deliveries"][-self.max_deliveries:])

    def _save(self, models: dict[str, Any], deliveries: OrderedDict[str, None]) -> None:
        """Write, then adopt: a failed write leaves memory and disk as they were."""
        write_json(self.path, {"format": FORMAT, "models": models, "deliveries": list(deliveries)})
        self.models, self.deliveries = models, deliveries

    def remember(self, delivery_id: str) -> bool:
        """Record a delivery id; False if it was processed before (a replay)."""
        with self.lock:
            if delivery_id in self.deliveries:
                return False
            deliveries = OrderedDict(self.deliveries)
            deliveries[delivery_id] = None
            while len(deliveries) > self.max_deliveries:
                deliveries.popitem(last=False)
            self._save(self.models, deliveries)
            return True

    def model(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            entry = self.models.get(name)
            return None if entry is None else dict(entry)

    def settle(self, name: str, device: str | None, champion: str | None,
               exported: dict[str, Any] | None = None) -> None:
        """Where the alias stands now for ``name``; ``exported``: what :func:`~edgeqat.lifecycle.promotion.export`
        just wrote to the deploy folder."""
        with self.lock:
            entry = {**self.models.get(name, {}), "device": device, "champion": champion, "updated_at": utc_now()}
            if exported is not None:
                entry["deployed"] = {"version": str(exported["version"]), "sha256": exported["sha256"],
                                     "file": self._relative(exported["file"]), "at": utc_now()}
            self._save({**self.models, name: entry}, self.deliveries)

    def deployed(self, name: str, version: str) -> bool:
        """Whether ``version`` is what sits in the deploy folder, checked against the file itself."""
        d = (self.model(name) or {}).get("deployed")
        if not d or d.get("version") != version:
            return False
        f = contained(self.root, d["file"], f"{self.path}: models.{name}.deployed.file")
        return f.is_file() and sha256_file(f) == d.get("sha256")

    def _relative(self, file: str | Path) -> str:
        # relative to the deploy folder, so the folder can move with its state
        try:
            return str(Path(file).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(file)
