"""The receiver's actions: keep each managed model's deploy folder in step with its champion.

Two ways in, one way through. A verified webhook event (``model_version_alias.created`` or
``.deleted``) and the reconcile pass (on start, then every ``reconcile_interval`` seconds)
both end in :meth:`Receiver.sync`, which reads where the alias points *now* and compares
it with what the receiver last settled (:class:`~edgeqat.lifecycle.receiver_state.ReceiverState`,
persisted in the deploy folder). So a move made while the receiver was down, or whose
delivery MLflow dropped (it retries for ~7 s), is caught up on the next pass under the
same gates, and a replayed or late delivery finds nothing left to do.

When the alias has moved:

* to a version whose move edgeqat recorded itself (``promote``, ``rollback``, the
  register step's ``auto_promote``, our own revert): it was gated already; exported;
* to a version moved outside edgeqat (the MLflow UI, REST): gated here (a per-device model
  on its own device). Passing: recorded (``ui``) and exported. Failing: the version is
  tagged ``edgeqat.rejected``, its description gets a first line saying why, and the alias
  goes back to the previous champion (or is removed if there was none);
* nowhere (the alias was deleted): recorded (``removed``); the deploy folder keeps the last
  accepted model and its ``export.json`` says ``<alias>_set: false``.

The main model deploys to ``deploy_dir``, each per-device model to ``deploy_dir/<device>/``
(Vela's compiled file for an Ethos-U device). Work happens on one worker thread, so two
moves are never handled at once and MLflow's delivery never waits on a download.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from edgeqat.config import RegisterConfig
from edgeqat.io import log
from edgeqat.lifecycle.managed import Model, ModelNotManaged, discover, resolve
from edgeqat.lifecycle.export import export
from edgeqat.lifecycle.gates import gate_reasons
from edgeqat.lifecycle.promotion import last_recorded, mark_unset, record_move, rejection_note
from edgeqat.lifecycle.receiver_state import ReceiverState, lock_deploy_folder

CREATED = "model_version_alias.created"
DELETED = "model_version_alias.deleted"
EVENTS = [CREATED, DELETED]
IGNORED = "not a move of a watched alias, ignored"


class Receiver:
    """Acts on verified events and reconcile passes, one at a time."""

    def __init__(self, reg: Any, cfg: RegisterConfig, deploy_dir: str | Path, alias: str = "champion", *,
                 profiles_dir: str | Path | None = None) -> None:
        self.reg, self.cfg, self.deploy_dir, self.alias = reg, cfg, Path(deploy_dir), alias
        self.profiles_dir = profiles_dir
        self._lock = lock_deploy_folder(self.deploy_dir)  # a second receiver on this folder stops here
        try:
            self.state = ReceiverState(self.deploy_dir)  # an unreadable state file stops us here, clearly
        except Exception:
            self._lock.close()
            raise
        self.models: dict[str, Model] = {}
        self.queue: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.reconcile_pending = False
        self.stopping = threading.Event()
        self.started_at: float | None = None
        self.worker = threading.Thread(target=self._work, name="edgeqat-webhook-worker", daemon=True)
        self.worker.start()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, reconcile_interval: float = 30.0) -> "Receiver":
        """Catch up at once, then every ``reconcile_interval`` seconds (0: only now)."""
        self.started_at = time.monotonic()
        self.request_reconcile("start")
        if reconcile_interval > 0:
            threading.Thread(target=self._tick, args=(reconcile_interval,), name="edgeqat-reconcile",
                             daemon=True).start()
        return self

    def close(self, timeout: float = 60.0) -> None:
        """Stop the timer and the worker (after the item in hand)."""
        self.stopping.set()
        self.queue.put(None)
        self.worker.join(timeout)
        self._lock.close()  # the deploy folder is free for the next receiver

    def _tick(self, interval: float) -> None:
        while not self.stopping.wait(interval):
            self.request_reconcile("interval")

    def request_reconcile(self, why: str) -> None:
        with self.lock:  # one pass queued at a time: a slow pass does not pile up more
            if self.reconcile_pending:
                return
            self.reconcile_pending = True
        self.queue.put(("reconcile", why))

    def drain(self, timeout: float = 60.0) -> None:
        """Wait until every queued item is handled (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- the HTTP side --------------------------------------------------------------------

    def accept(self, event: dict[str, Any]) -> str:
        """Queue a verified event; returns what will happen to it. Called on HTTP threads."""
        data = event["data"]
        name, base = str(data.get("name")), self.cfg.model_name
        if (f"{event['entity']}.{event['action']}" not in EVENTS or data.get("alias") != self.alias
                or not (name == base or name.startswith(f"{base}-"))):
            return IGNORED
        if not self.state.remember(event["delivery_id"]):  # persisted: a replay after a restart is refused too
            return "duplicate delivery, ignored"
        self.queue.put(("event", name))
        return "queued"

    # --- the worker -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                kind, arg = item
                if kind == "reconcile":
                    self.reconcile(arg)
                else:
                    self._event(arg)
            except Exception as err:  # keep serving; the failure is logged and kept
                self._fail(f"{item[0]} {item[1]}", err)
            finally:
                self.queue.task_done()

    def _fail(self, what: str, err: Exception) -> None:
        msg = f"webhook: {what}@{self.alias}: {err}"
        self.errors.append(msg)
        log(msg)

    def _event(self, name: str) -> None:
        m = self.models.get(name)
        if m is None:  # e.g. a per-device model registered after we started
            try:
                m = self.models[name] = resolve(self.reg, self.cfg.model_name, name)
            except ModelNotManaged as err:
                log(f"webhook: {err}; event ignored")
                return
        self.sync(m, "webhook")

    def reconcile(self, why: str = "interval") -> dict[str, Any]:
        """Every managed model whose alias moved without us (or whose folder lost its file): synced."""
        with self.lock:
            self.reconcile_pending = False
        t0 = time.monotonic()
        found = discover(self.reg, self.cfg.model_name, self.alias)
        self.models = {m.name: m for m, _ in found}
        caught = []
        for m, at in found:
            if not self._behind(m, at):
                continue
            try:
                caught.append(f"{m.name}: {self.sync(m, 'reconcile')['action']}")
            except Exception as err:  # the other models still get their turn
                self._fail(f"reconcile {m.name}", err)
        took = time.monotonic() - t0
        if why == "start" or caught:
            since = f", {time.monotonic() - self.started_at:.1f} s after start" if why == "start" and self.started_at else ""
            log(f"webhook: reconcile ({why}): {len(found)} model(s) checked, {len(caught)} caught up in {took:.1f} s"
                f"{since}" + (f": {'; '.join(caught)}" if caught else ""))
        return {"models": len(found), "caught_up": caught, "seconds": took}

    # --- one model ------------------------------------------------------------------------

    def _behind(self, m: Model, at: str | None) -> bool:
        entry = self.state.model(m.name)
        if entry is None:
            return at is not None
        if entry.get("champion") != at:
            return True
        return at is not None and not self.state.deployed(m.name, at)

    def sync(self, m: Model, source: str = "webhook") -> dict[str, Any]:
        """Bring ``m``'s deploy folder in step with where its alias points now."""
        at = self.reg.alias_version(m.name, self.alias)
        if not self._behind(m, at):
            return {"action": "unchanged"}
        if at is None:
            return self._removed(m, source)
        recorded = last_recorded(self.reg.history(m.name), self.alias)
        if recorded != at:  # moved outside edgeqat: gated here
            reasons = gate_reasons(self.reg, self.cfg, m, at, self.alias, recorded)
            if reasons:
                return self._reject(m, at, recorded, reasons, source)
            self.reg.record(m.name, {"action": "ui", "alias": self.alias, "version": at, "previous": recorded,
                                     "by": f"MLflow (seen by edgeqat {source})",
                                     "reason": "alias set outside edgeqat; gates passed"})
        return {"action": "deployed", **self._deploy(m, at, source)}

    def _deploy(self, m: Model, version: str, source: str) -> dict[str, Any]:
        out = m.folder(self.deploy_dir)
        info = export(self.reg, m.name, out, alias=self.alias, version=version, device=m.device,
                      profiles_dir=self.profiles_dir)
        self.state.settle(m.name, m.device, version, exported=info)
        self.reg.record(m.name, {"action": "deployed", "alias": self.alias, "version": version, "by": f"edgeqat {source}",
                                 "reason": f"exported to {out}", "sha256": info["sha256"]})
        log(f"webhook: {m.name}@{self.alias} = version {version}: deployed to {out} ({source})")
        return info

    def _reject(self, m: Model, version: str, previous: str | None, reasons: list[str], source: str) -> dict[str, Any]:
        why = "; ".join(reasons)
        self.reg.record(m.name, {"action": "rejected", "alias": self.alias, "version": version, "previous": previous,
                                 "by": f"MLflow (seen by edgeqat {source})", "reasons": reasons})
        # The revert first: devices must not be offered a failing model while we annotate.
        record_move(self.reg, m.name, self.alias, previous, {"action": "revert", "previous": version,
                                                            "by": f"edgeqat {source}",
                                                            "reason": f"version {version} failed: {why}"})
        self.state.settle(m.name, m.device, previous)
        log(f"webhook: {m.name}@{self.alias} -> version {version} REJECTED ({why}); "
            f"{self.alias} back on {previous or 'nothing'} ({source})")
        try:
            self._annotate_rejection(m, version, why)
        except Exception as err:  # the revert stands; say why the UI shows no reason
            self._fail(f"annotating rejected {m.name} version {version}", err)
        if previous is None:
            mark_unset(m.folder(self.deploy_dir), m.name, self.alias, f"edgeqat {source} (rejected version {version})")
        elif not self.state.deployed(m.name, previous):  # e.g. first start: the folder never had it
            self._deploy(m, previous, source)
        return {"action": "reverted", "to": previous, "reasons": reasons}

    def _annotate_rejection(self, m: Model, version: str, why: str) -> None:
        """Where the user clicked: the version's description starts with why, and a tag keeps it."""
        self.reg.tag_version(m.name, version, "edgeqat.rejected", f"{self.alias}: {why}"[:4000])
        described = self.reg.version(m.name, version)["description"]
        self.reg.set_description(m.name, version, rejection_note(described, self.alias, why))

    def _removed(self, m: Model, source: str) -> dict[str, Any]:
        recorded = last_recorded(self.reg.history(m.name), self.alias)
        out = m.folder(self.deploy_dir)
        kept = ((self.state.model(m.name) or {}).get("deployed") or {}).get("version")
        by = f"MLflow (seen by edgeqat {source})"
        if recorded is not None:  # edgeqat records its own removals before making them
            self.reg.record(m.name, {"action": "removed", "alias": self.alias, "version": None, "previous": recorded,
                                     "by": by, "reason": f"alias removed outside edgeqat; {out} keeps version {kept}"})
        mark_unset(out, m.name, self.alias, by)
        self.state.settle(m.name, m.device, None)
        log(f"webhook: {m.name}@{self.alias} removed; {out} keeps version {kept or 'none'} ({source})")
        return {"action": "removed", "kept": kept}
