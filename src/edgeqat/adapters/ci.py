"""The one CI entry point every workflow calls (`edgeqat ci run`): pull -> repro -> push ->
track and register a challenger -> a Markdown report -> commit dvc.lock and the results.

A push, a schedule and a person all get the same run: the workflow files only set up Python
and call this. With nothing changed it runs no stage and exits 0 quickly (it still makes sure
the current results are in the MLflow store: track and register reuse what exists). A model
that fails its required device is tracked and reported, not registered, and the exit status
is 1 after the report is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edgeqat.errors import EdgeqatError
from edgeqat.io import log, read_json, write_text
from edgeqat.reporting.ci import CiRun, ci_markdown, kubeflow_markdown, metrics_diff_text, versions_table
from edgeqat.workspace.stages import STAGES, Workspace

# What a results commit holds: the lock and the folders of the small files DVC does not cache
# (cache: false): metrics, plots, reports.
RESULTS = ("dvc.lock", *sorted({Path(p.path).parts[0] for s in STAGES for p in s.outputs
                                if p.dvc in ("committed", "metrics")}))
# A scheduled run finds new data only through an import: data `dvc add`ed in this repository
# changes only with a commit of its .dvc file, which the push workflow retrains on.
NOTHING_TO_REFRESH = ("no imported data in this repository (`dvc import` from a data repository, or "
                      "`dvc import-url`), so nothing can be new; data versioned here with `dvc add` is retrained "
                      "when its .dvc file is committed (the push workflow), not on a schedule")


@dataclass
class CiResult(CiRun):
    """The run as its report tells it (:class:`~edgeqat.reporting.ci.CiRun`), and what it left."""

    registered: dict[str, Any] | None = None
    committed: str | None = None
    report: Path | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.gate_failure else 0


def _tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def _run(cmd: list[str], root: Path, check: bool = True, quiet: bool = False,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env={**os.environ, **env} if env else None)
    if not quiet and proc.stderr.strip():
        sys.stderr.write(proc.stderr)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise EdgeqatError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): " + " / ".join(tail))
    return proc


def dvc(root: Path, *args: str, check: bool = True, quiet: bool = False,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return _run([_tool("dvc"), *args], root, check=check, quiet=quiet, env=env)


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["git", *args], root, check=check, quiet=True)


def default_remote(root: Path) -> str | None:
    proc = dvc(root, "remote", "default", check=False, quiet=True)
    name = proc.stdout.strip()
    return name if proc.returncode == 0 and name else None


def imports(root: Path) -> list[Path]:
    """`.dvc` files of imported data (`dvc import` / `dvc import-url`): they have deps."""
    import yaml

    out = []
    for f in sorted(root.rglob("*.dvc")):
        if not f.is_file() or ".dvc" in f.relative_to(root).parts[:-1]:
            continue
        try:
            if (yaml.safe_load(f.read_text()) or {}).get("deps"):
                out.append(f)
        except yaml.YAMLError:
            continue
    return out


def refresh_imports(root: Path) -> tuple[list[str], str]:
    """`dvc update` of every import (the newest data its source holds): (the .dvc files updated,
    why nothing could be new when there is no import)."""
    found = imports(root)
    if not found:
        log(f"ci: --refresh-data: {NOTHING_TO_REFRESH}")
        return [], NOTHING_TO_REFRESH
    for f in found:
        log(f"ci: dvc update {f.relative_to(root)}")
        dvc(root, "update", str(f.relative_to(root)))
    return [str(f.relative_to(root)) for f in found], ""


def changed_stages(root: Path) -> list[str]:
    proc = dvc(root, "status", "--json", quiet=True)
    try:
        status = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return ["?"]
    return sorted(k.split(":")[-1] for k in status if not k.endswith(".dvc"))


def stages_in(output: str) -> list[str]:
    return re.findall(r"Running stage '([A-Za-z0-9_@-]+)'", output)


# --- the report --------------------------------------------------------------------------


def metrics_diff(root: Path, base: str) -> str:
    proc = dvc(root, "metrics", "diff", base, "--md", check=False, quiet=True)
    return metrics_diff_text(base, proc.stdout.strip(), proc.returncode, proc.stderr or proc.stdout)


def challenger_vs_champion(reg: Any, name: str) -> str:
    from edgeqat.lifecycle.promotion import CHALLENGER, CHAMPION
    from edgeqat.lifecycle.version_tags import VersionTags

    def row(alias: str) -> Optional[dict[str, Any]]:
        found = reg.alias_version(name, alias)
        if not found:
            return None
        v = reg.version(name, found)
        return {"version": v["version"], "tags": VersionTags.from_tags(v["tags"])}

    rows = {alias: row(alias) for alias in (CHALLENGER, CHAMPION)}
    return versions_table((CHALLENGER, rows[CHALLENGER]), (CHAMPION, rows[CHAMPION]))


def build_report(root: Path, res: CiResult, base: str, trigger: str) -> str:
    from edgeqat.reporting.tables import with_latency
    from edgeqat.workspace.timings import latest_latency

    commit = git(root, "rev-parse", "--short", "HEAD", check=False).stdout.strip() or "?"
    metrics = metrics_diff(root, base)
    ws = Workspace(root)
    summary_file = ws.path("summary")
    summary = (with_latency(read_json(summary_file), latest_latency(ws.path("evaluate_timings"), ws.path("host_latency")))
               if summary_file.is_file() else None)
    registered, recommended = None, ()
    if res.registered:
        from edgeqat.lifecycle.registry import Registry
        from edgeqat.lifecycle.tracking import usable_uri

        reg = Registry(usable_uri(res.registered.get("tracking_uri"), root), root)
        name = res.registered["model_name"]
        registered = (name, challenger_vs_champion(reg, name))
        recommended = tuple((r["model_name"], challenger_vs_champion(reg, r["model_name"]))
                            for _, r in sorted((res.registered.get("recommended") or {}).items()) if r)
    return ci_markdown(res, trigger=trigger, commit=commit, base=base, metrics=metrics, summary=summary,
                       registered=registered, recommended=recommended)


# --- publishing ---------------------------------------------------------------------------


def publish_on_github(report: str) -> None:
    """Job summary and a commit comment, when running as a GitHub Actions job."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as fh:
            fh.write(report + "\n")
    repo, sha, token = (os.environ.get(k) for k in ("GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_TOKEN"))
    if not (repo and sha and token):
        return
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com")
    req = urllib.request.Request(f"{api}/repos/{repo}/commits/{sha}/comments", method="POST",
                                 data=json.dumps({"body": report}).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"})
    try:
        with urllib.request.urlopen(req, timeout=30):
            pass
    except (urllib.error.URLError, OSError) as err:
        log(f"ci: could not post the report as a commit comment ({err}); it is in the job summary")


def commit_results(root: Path, message: str, push: bool) -> str | None:
    from edgeqat.adapters.generate import readme_with_results

    readme = readme_with_results(root)  # the README's results table follows the new results
    if readme is not None and readme != (root / "README.md").read_text():
        write_text(root / "README.md", readme)
    paths = [p for p in (*RESULTS, *[str(f.relative_to(root)) for f in imports(root)], *(["README.md"] if readme else []))
             if (root / p).exists()]
    git(root, "add", "--", *paths)
    if git(root, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return None
    git(root, "commit", "-q", "-m", message)
    sha = git(root, "rev-parse", "HEAD").stdout.strip()
    if push:
        git(root, "push", "-q")
    return sha


# --- the run ----------------------------------------------------------------------------------


def _publish_stage(root: Path, name: str) -> subprocess.CompletedProcess:
    """`edgeqat stage track|register`: ensure the current results are in the MLflow store."""
    return _run([_tool("edgeqat"), "stage", name], root, check=False)


def submit_to_kubeflow(root: Path, params: Any, host: str, trigger: str) -> str:
    """With a Kubeflow cluster (``KFP_HOST``): compile and submit the pipeline; the report says so."""
    import tempfile

    from edgeqat.adapters.kfp.images import resolve_image
    from edgeqat.pipelines.ops import compile_pipeline, run_request, submit
    from edgeqat.workspace.provenance import git_info

    git_tags = git_info(root)
    data_uri = os.environ.get("EDGEQAT_DATA_URI") or None
    with tempfile.TemporaryDirectory(prefix="edgeqat-ci-") as tmp:
        pkg = compile_pipeline(Path(tmp) / "edge_pipeline.yaml", image=resolve_image(None, root),
                               data_from_uri=bool(data_uri))
        req = run_request(params, pkg, experiment="edgeqat", name=f"{trigger}-{git_tags['git_commit'][:8]}",
                          mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
                          run_tags={**git_tags, "trigger": trigger}, data_uri=data_uri)
        result = submit(host, req)
    return kubeflow_markdown(trigger, git_tags["git_commit"][:8], host, result.get("run_id", "?"))


def run_ci(root: str | Path = ".", *, params_file: str = "params.yaml", refresh_data: bool = False, push: bool = True,
           commit: bool = True, push_git: bool = False, report: str | Path = "ci-report.md",
           trigger: str | None = None, github: bool = False) -> CiResult:
    from edgeqat.adapters.run_params import load_run_params

    root, t0 = Path(root), time.monotonic()
    params = load_run_params(root / params_file)  # a bad params file or device fails before anything runs
    res = CiResult()
    trigger = trigger or os.environ.get("GITHUB_EVENT_NAME") or "manual"
    if os.environ.get("KFP_HOST"):
        text = submit_to_kubeflow(root, params, os.environ["KFP_HOST"], trigger)
        res.report = write_text(root / report, text)
        if github:
            publish_on_github(text)
        return res
    base = "HEAD"  # results are committed after the run: HEAD holds the previous ones
    remote = default_remote(root)
    if remote:
        log(f"ci: dvc pull from {remote!r}")
        dvc(root, "pull", "--allow-missing")
        res.pulled = True
    else:
        log("ci: no DVC remote configured (dvc remote add -d ...): nothing to pull or push")
    if refresh_data:
        res.refreshed, res.refresh_note = refresh_imports(root)
    todo = changed_stages(root)
    if todo:
        log(f"ci: dvc repro ({len(todo)} stage(s) changed: {', '.join(todo)})")
        # the execution's live MLflow run is named for what started it (edgeqat.adapters.live)
        commit = git(root, "rev-parse", "--short=8", "HEAD", check=False).stdout.strip() or "unknown"
        out = dvc(root, "repro", check=False, env={"EDGEQAT_RUN_NAME": f"ci {trigger} {commit}"})
        sys.stderr.write(out.stdout)
        res.stages_run = stages_in(out.stdout)
        if out.returncode != 0 and not _gate_failed(root, params):  # a failed gate is reported below
            raise EdgeqatError(f"dvc repro failed (exit {out.returncode}); see the log above")
    else:
        log("ci: pipeline up to date: no stage to run")
    if remote and push:
        dvc(root, "push")
        res.pushed = True
    for stage in ("track", "register"):  # no-ops when dvc repro just did them
        proc = _publish_stage(root, stage)
        if proc.returncode not in (0, 1):
            raise EdgeqatError(f"edgeqat stage {stage} failed (exit {proc.returncode}): "
                               + " / ".join(proc.stderr.strip().splitlines()[-3:]))
        if stage == "register" and proc.returncode == 1:
            res.gate_failure = _gate_failed(root, params) or proc.stderr.strip().splitlines()[-1]
    registered = Workspace(root).path("registered")
    if not res.gate_failure and registered.is_file():
        res.registered = read_json(registered)
    res.seconds = time.monotonic() - t0
    text = build_report(root, res, base, trigger)
    res.report = write_text(root / report, text)
    if commit:
        res.committed = commit_results(root, f"edgeqat ci ({trigger}): results of the pipeline [skip ci]", push_git)
    if github:
        publish_on_github(text)
    log(f"ci: report in {res.report}; {len(res.stages_run)} stage(s) run in {res.seconds:.1f} s"
        + (f"; results committed as {res.committed[:8]}" if res.committed else ""))
    return res


def _gate_failed(root: Path, params: Any) -> str:
    """Why the pipeline's model may not be registered: a required device, or chance level."""
    from edgeqat.lifecycle.run_gate import registry_gate

    summary = Workspace(root).path("summary")
    if not summary.is_file():
        return ""
    return registry_gate(read_json(summary), params.register.variant, params.register.chance_margin)
