"""MLflow model registry service: the TFLite pyfunc model, versions, aliases, history, webhooks.

With :mod:`edgeqat.lifecycle.tracking`, the only module that imports mlflow. Gate logic lives in
:mod:`edgeqat.lifecycle.promotion` (no MLflow), which drives this service.

MLflow has no TFLite flavour, so a ``.tflite`` is logged as a pyfunc model: a
:class:`TFLiteModel` (``PythonModel``) wraps the LiteRT interpreter, the ``.tflite`` and
its single-variant model card are the model's artifacts, and the ``edgeqat`` package
itself travels as ``code_paths`` so the model loads (``mlflow.pyfunc.load_model`` or
``mlflow models serve --env-manager local``) wherever mlflow, numpy, pandas and
ai-edge-litert are installed; TensorFlow is never needed to predict.

Promotion history: one small JSON artifact per event (``history/edgeqat.history.<utc>.<rand>.json``)
in a run of its own per registered model (experiment ``edgeqat-promotion-history``), so the
history lives on the same tracking server as the aliases, and an append is a write of a fresh
file: two writers never lose each other's entries the way a read-modify-write document would.
The registered model itself carries two tags, whatever the history's length: where the history
is (``edgeqat.history_run``) and the last event (``edgeqat.last_move``). History written by
earlier versions, one registered-model tag per event (``edgeqat.history.<utc>.<rand>``), still
reads, merged in time order.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeqat.lifecycle.tracking import mlflow_prints, open_store, tracking_uri  # noqa: I001 - first: it quiets MLflow before it loads

import mlflow.pyfunc
import numpy as np

from edgeqat.errors import EdgeqatError
from edgeqat.io import CARD_NAME
from edgeqat.lifecycle.version_tags import VersionTags

HISTORY_PREFIX = "edgeqat.history."  # an event's key; earlier versions: a registered-model tag each
HISTORY_EXPERIMENT = "edgeqat-promotion-history"
HISTORY_RUN_TAG = "edgeqat.history_run"  # on the registered model: the run holding its history
LAST_MOVE_TAG = "edgeqat.last_move"  # on the registered model: the latest event, at a glance
HISTORY_OF = "edgeqat.history_of"  # on the history run: the registered model's name
HISTORY_DIR = "history"
PKG_DIR = Path(__file__).resolve().parents[1]  # src/edgeqat: the model code below is relative to it


class RegistryError(EdgeqatError):
    """The registry refused an operation or holds something unexpected."""


# --- the pyfunc model -----------------------------------------------------------------

# The model's code (a pyfunc "model from code", loaded by MLflow by path) and what it needs
# of edgeqat to load and predict (no TensorFlow), shipped with every model as code_paths.
MODEL_SCRIPT = PKG_DIR / "serving" / "tflite_pyfunc.py"
MODEL_CODE = ("__init__.py", "errors.py", "io.py", "quantization/__init__.py", "quantization/runtime.py",
              "quantization/classifier.py")


def signature(card: dict[str, Any]) -> Any:
    """uint8 images of the card's input shape -> one row per image."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *card["input_shape"]))]),
        outputs=Schema([ColSpec(DataType.long, "class_index"), ColSpec(DataType.string, "class_name"),
                        ColSpec(DataType.double, "probability"), ColSpec(Array(DataType.double), "probabilities")]))


def single_variant_card(card: dict[str, Any], variant: str) -> dict[str, Any]:
    if variant not in card.get("variants", {}):
        raise RegistryError(f"model card has no variant {variant!r} (has: {', '.join(sorted(card.get('variants', {})))})")
    return {**{k: v for k, v in card.items() if k != "variants"}, "variants": {variant: card["variants"][variant]}}


def save_pyfunc(tflite: Path, card: dict[str, Any], out: Path, mlflow_model: Any = None) -> dict[str, Any]:
    """Write the pyfunc model folder for ``tflite`` (card = its single-variant model card);
    ``mlflow_model``: the MLmodel metadata of the LoggedModel it will be uploaded to."""
    from importlib.metadata import version as dist_version

    from edgeqat.io import write_json

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / tflite.name).write_bytes(tflite.read_bytes())
        write_json(tmp / CARD_NAME, card)
        for rel in MODEL_CODE:
            dest = tmp / "code" / "edgeqat" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes((PKG_DIR / rel).read_bytes())
        example = np.full((1, *card["input_shape"]), 128, dtype=np.uint8)
        sig = signature(card)
        reqs = [f"mlflow=={dist_version('mlflow')}", f"numpy=={dist_version('numpy')}",
                f"pandas=={dist_version('pandas')}", f"ai-edge-litert=={dist_version('ai-edge-litert')}"]
        mlflow.pyfunc.save_model(
            path=str(out),
            python_model=str(MODEL_SCRIPT),
            artifacts={"tflite": str(tmp / tflite.name), "model_card": str(tmp / CARD_NAME)},
            code_paths=[str(tmp / "code" / "edgeqat")],
            signature=sig,
            input_example=example,
            pip_requirements=reqs,  # explicit: skips MLflow's slow requirement inference
            mlflow_model=mlflow_model,
        )
    return {"signature": sig.to_dict()}


def log_tflite_model(uri: str, experiment_id: str, run_id: str, name: str, tflite: Path, card: dict[str, Any],
                     tags: dict[str, str]) -> dict[str, str]:
    """The .tflite as a LoggedModel (pyfunc) of run ``run_id``: listed on the run's page, and
    what a registered version points to (``models:/<model_id>``)."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    client = MlflowClient_for(uri)
    lm = client.create_logged_model(experiment_id, name=name, source_run_id=run_id, tags=tags, model_type="tflite")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            meta = Model(artifact_path=lm.artifact_location, run_id=run_id, model_id=lm.model_id)
            save_pyfunc(tflite, card, local, mlflow_model=meta)
            client.log_model_artifacts(lm.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(lm.model_id, step=0)])
        client.finalize_logged_model(lm.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.finalize_logged_model(lm.model_id, LoggedModelStatus.FAILED)
        raise
    return {"model_id": lm.model_id, "model_uri": f"models:/{lm.model_id}", "name": name}


def MlflowClient_for(uri: str) -> Any:  # noqa: N802 - reads as the class it returns
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# --- the registry ---------------------------------------------------------------------


def _model_dict(rm: Any) -> dict[str, Any]:
    return {"name": rm.name, "tags": dict(rm.tags or {}), "aliases": {k: str(v) for k, v in (rm.aliases or {}).items()}}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Registry:
    """Registered models' versions, aliases and history on one tracking server."""

    def __init__(self, uri: str | None = None, root: str | Path = ".") -> None:
        from mlflow.tracking import MlflowClient

        import threading

        self.root = Path(root)
        self.uri = uri or tracking_uri(self.root)
        open_store(self.uri, self.root)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self._events: dict[str, dict[str, Any]] = {}  # history events read or written: they never change
        self._history_runs: dict[str, str] = {}  # model name -> its history run (never moves once made)
        self._lock = threading.Lock()  # the receiver reads history from its reconcile thread too

    def _call(self, what: str, fn, *args, **kwargs):
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as err:
            raise RegistryError(f"MLflow at {self.uri}: {what}: {err.message}") from None
        except OSError as err:  # connection refused/reset mid-way
            raise RegistryError(f"MLflow at {self.uri}: {what}: {err}") from None

    # registration
    def ensure_model(self, name: str, description: str = "", tags: dict[str, str] | None = None) -> None:
        """Create the registered model if missing; ``tags`` are (re)set either way."""
        from mlflow.exceptions import MlflowException

        try:
            rm = self.client.get_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"MLflow at {self.uri}: registered model {name!r}: {err.message}") from None
            rm = None
        if rm is None:
            try:
                self.client.create_registered_model(name, description=description or None, tags=tags)
                return
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":  # another run created it meanwhile
                    raise RegistryError(f"MLflow at {self.uri}: creating registered model {name!r}: {err.message}") from None
            rm = self.client.get_registered_model(name)
        for k, v in (tags or {}).items():
            if (rm.tags or {}).get(k) != v:
                self._call(f"tagging registered model {name!r}", self.client.set_registered_model_tag, name, k, v)

    def create_version(self, name: str, model_id: str, run_id: str, tags: dict[str, str], description: str) -> str:
        """A version of ``name`` pointing at the LoggedModel ``model_id`` of run ``run_id``."""
        mv = self._call(f"registering a version of {name!r}", self.client.create_model_version,
                        name, f"models:/{model_id}", run_id=run_id, tags=tags, description=description,
                        model_id=model_id)
        # SQL stores create versions READY; wait for any other store to finish.
        for _ in range(60):
            if mv.status == "READY":
                break
            time.sleep(0.5)
            mv = self.client.get_model_version(name, mv.version)
        self.link_logged_model(model_id, name, str(mv.version))
        return str(mv.version)

    def link_logged_model(self, model_id: str, name: str, version: str) -> None:
        """List the version on its LoggedModel's page (``mlflow.modelVersions``): a tracking
        server does it itself; the embedded store does not."""
        from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

        lm = self._call(f"logged model {model_id}", self.client.get_logged_model, model_id)
        listed = json.loads(lm.tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
        entry = {"name": name, "version": version}
        if (name, version) not in {(m.get("name"), str(m.get("version"))) for m in listed}:
            self._call(f"linking logged model {model_id} to {name!r} version {version}", self.client.set_logged_model_tags,
                       model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*listed, entry])})

    def find_version(self, name: str, run_id: str, sha256: str) -> str | None:
        """The version of ``name`` already registered from run ``run_id`` for this file, if any."""
        for v in self.all_versions(name):
            t = VersionTags.from_tags(v["tags"])
            if t.mlflow_run_id == run_id and t.sha256 == sha256:
                return v["version"]
        return None

    # reads
    def version(self, name: str, version: str | int) -> dict[str, Any]:
        mv = self._call(f"{name!r} version {version}", self.client.get_model_version, name, str(version))
        return {"version": str(mv.version), "tags": dict(mv.tags), "description": mv.description or "",
                "run_id": mv.run_id, "source": mv.source, "aliases": list(mv.aliases or [])}

    def alias_version(self, name: str, alias: str) -> str | None:
        return self.registered_model(name)["aliases"].get(alias)

    def all_versions(self, name: str) -> list[dict[str, Any]]:
        found = self._call(f"versions of {name!r}", self.client.search_model_versions, f"name='{name}'")
        return [{"version": str(m.version), "tags": dict(m.tags)} for m in found]

    def registered_model(self, name: str) -> dict[str, Any]:
        return _model_dict(self._call(f"registered model {name!r}", self.client.get_registered_model, name))

    def find_models(self, prefix: str) -> list[dict[str, Any]]:
        """Registered models named ``prefix`` or ``prefix-*``, with their tags and aliases."""
        if "'" in prefix:
            raise RegistryError(f"model name {prefix!r}: a quote cannot be searched for")
        out, token = [], None
        while True:
            page = self._call(f"searching models named {prefix}*", self.client.search_registered_models,
                              filter_string=f"name LIKE '{prefix}%'", max_results=1000, page_token=token)
            out += [_model_dict(rm) for rm in page
                    if rm.name == prefix or rm.name.startswith(f"{prefix}-")]  # LIKE's _ is a wildcard
            token = page.token
            if not token:
                return out

    def versions(self, name: str) -> list[str]:
        found = self._call(f"versions of {name!r}", self.client.search_model_versions, f"name='{name}'")
        return sorted((str(m.version) for m in found), key=int)

    # writes
    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        self._call(f"setting alias {alias!r} on {name!r} version {version}",
                   self.client.set_registered_model_alias, name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._call(f"deleting alias {alias!r} of {name!r}", self.client.delete_registered_model_alias, name, alias)

    def tag_version(self, name: str, version: str | int, key: str, value: str) -> None:
        self._call(f"tagging {name!r} version {version}", self.client.set_model_version_tag, name, str(version), key, value)

    def set_description(self, name: str, version: str | int, text: str) -> None:
        self._call(f"describing {name!r} version {version}", self.client.update_model_version,
                   name, str(version), description=text)

    # history
    def record(self, name: str, event: dict[str, Any]) -> dict[str, Any]:
        """Append ``event`` to ``name``'s history (a fresh artifact) and show it as the last move."""
        event = {"at": _now(), **event}
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        key = f"{HISTORY_PREFIX}{stamp}.{secrets.token_hex(4)}"
        run_id = self._history_run(name, create=True)
        body = json.dumps(event, sort_keys=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{key}.json"
            path.write_text(body)
            self._call(f"recording history of {name!r}", self.client.log_artifact, run_id, str(path), HISTORY_DIR)
        with self._lock:
            self._events[key] = event
        last = body if len(body) <= 5000 else json.dumps({k: event.get(k) for k in ("at", "action", "alias", "version", "by")})
        self._call(f"tagging registered model {name!r}", self.client.set_registered_model_tag, name, LAST_MOVE_TAG, last)
        return {**event, "key": key}

    def _history_run(self, name: str, create: bool) -> str | None:
        """The run holding ``name``'s history: named by a registered-model tag, else found by
        its own tag, else (``create``) made; two first writers racing keep the earliest run."""
        from edgeqat.lifecycle.tracking import ensure_experiment

        with self._lock:
            if name in self._history_runs:
                return self._history_runs[name]
        rm = self._call(f"registered model {name!r}", self.client.get_registered_model, name)
        known = (rm.tags or {}).get(HISTORY_RUN_TAG)
        if known:
            with self._lock:
                self._history_runs[name] = known
            return known
        exp = self.client.get_experiment_by_name(HISTORY_EXPERIMENT)
        if exp is None and not create:
            return None
        exp_id = exp.experiment_id if exp is not None else ensure_experiment(self.client, HISTORY_EXPERIMENT, self.uri, self.root)

        def find() -> Any:
            runs = self._call("searching the history runs", self.client.search_runs, [exp_id],
                              filter_string=f"tags.`{HISTORY_OF}` = '{name}'", max_results=10)
            return min(runs, key=lambda r: (r.info.start_time, r.info.run_id)) if runs else None

        run = find()
        if run is None:
            if not create:
                return None
            mine = self._call(f"creating the history run of {name!r}", self.client.create_run, exp_id,
                              run_name=f"{name}: promotion history", tags={HISTORY_OF: name})
            with mlflow_prints():  # MLflow's "View run at" lines
                self.client.set_terminated(mine.info.run_id, "FINISHED")
            run = find()
            if run.info.run_id != mine.info.run_id:
                self.client.delete_run(mine.info.run_id)
        self._call(f"tagging registered model {name!r}", self.client.set_registered_model_tag, name, HISTORY_RUN_TAG,
                   run.info.run_id)
        with self._lock:
            self._history_runs[name] = run.info.run_id
        return run.info.run_id

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every recorded event of ``name``, oldest first: the history run's artifacts (each
        downloaded once per process) and the tags earlier versions wrote."""
        rm = self._call(f"registered model {name!r}", self.client.get_registered_model, name)
        found: dict[str, dict[str, Any]] = {}
        for key, value in (rm.tags or {}).items():
            if key.startswith(HISTORY_PREFIX):
                try:
                    found[key] = json.loads(value)
                except json.JSONDecodeError:
                    found[key] = {"unreadable": value}
        run_id = (rm.tags or {}).get(HISTORY_RUN_TAG) or self._history_run(name, create=False)
        if run_id:
            files = self._call(f"history of {name!r}", self.client.list_artifacts, run_id, HISTORY_DIR)
            keys = [Path(f.path).name.removesuffix(".json") for f in files if f.path.endswith(".json")]
            with self._lock:
                missing = [k for k in keys if k not in self._events]
            if missing:
                with tempfile.TemporaryDirectory() as tmp:
                    local = Path(self._call(f"downloading the history of {name!r}", self.client.download_artifacts,
                                            run_id, HISTORY_DIR, tmp))
                    for k in missing:
                        try:
                            event = json.loads((local / f"{k}.json").read_text())
                        except (OSError, json.JSONDecodeError) as err:
                            event = {"unreadable": f"{type(err).__name__}: {err}"}
                        with self._lock:
                            self._events[k] = event
            with self._lock:
                found.update({k: self._events[k] for k in keys if k in self._events})
        return [{**event, "key": key} for key, event in sorted(found.items())]

    # export
    def download(self, name: str, version: str | int, dest: Path, subpath: str = "") -> Path:
        """The version's pyfunc model folder (or ``subpath`` in it), downloaded under ``dest``."""
        from mlflow.artifacts import download_artifacts

        src = self._call(f"{name!r} version {version}", self.client.get_model_version_download_uri, name, str(version))
        dest.mkdir(parents=True, exist_ok=True)
        return Path(self._call(f"downloading {name!r} version {version}", download_artifacts,
                               artifact_uri=f"{src.rstrip('/')}/{subpath}" if subpath else src,
                               dst_path=str(dest), tracking_uri=self.uri))

    # webhooks
    def install_webhook(self, name: str, url: str, secret: str, events: list[str]) -> dict[str, str]:
        """Create (or update, matched by name) a webhook; returns its id."""
        for wh in self._call("listing webhooks", self.client.list_webhooks):
            if wh.name == name:
                wh = self._call("updating webhook", self.client.update_webhook, wh.webhook_id,
                                url=url, events=events, secret=secret, status="ACTIVE")
                return {"webhook_id": wh.webhook_id, "action": "updated"}
        wh = self._call("creating webhook", self.client.create_webhook, name=name, url=url, events=events, secret=secret,
                        description="edgeqat: re-check gates when the champion alias moves or is removed")
        return {"webhook_id": wh.webhook_id, "action": "created"}


def load_pyfunc(uri: str, tracking: str | None = None):
    """``mlflow.pyfunc.load_model`` against a given tracking/registry URI."""
    if tracking:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(tracking)
    return mlflow.pyfunc.load_model(uri)

