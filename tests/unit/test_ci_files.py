"""The Dockerfile and the GitHub workflows pass their linters, and say what the README says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

BIN = Path(sys.executable).parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]' (it is in the dev extra)")
    return str(path)


def test_dockerfile_passes_hadolint():
    proc = subprocess.run([_tool("hadolint"), "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_installs_this_package_with_the_constraints():
    text = (REPO / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt" in text  # the runtime deps
    assert "pip install --no-cache-dir --no-deps --no-build-isolation -c constraints.txt ." in text
    assert "[dev]" not in text and "chromium" not in text  # no dev extra, no browser
    for folder in ("src", "components", "pipelines"):
        assert f"COPY {folder} ./{folder}" in text
    # the base is a build argument; the CA bundle only ever a secret mount, never copied in
    assert "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}" in text
    assert "--mount=type=secret,id=ca_bundle" in text and "ca-certificates.crt ." not in text
    assert "USER 1000" in text


def test_workflows_pass_the_github_workflow_schema():
    assert {p.name for p in WORKFLOWS} >= {"tests.yml", "pipeline.yml", "retrain.yml"}
    proc = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _steps(workflow: str) -> str:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / workflow).read_text())
    return "\n".join(step.get("run", "") for job in doc["jobs"].values() for step in job.get("steps", []))


def _runs(workflow: str) -> list[str]:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / workflow).read_text())
    return [step["run"].strip() for job in doc["jobs"].values() for step in job.get("steps", []) if "run" in step]


def test_the_tests_workflow_runs_exactly_what_ci_runs():
    tests = yaml.safe_load((REPO / ".github/workflows/tests.yml").read_text())
    assert {"push", "pull_request"} <= set(tests[True])  # YAML 1.1 reads the `on` key as True
    assert _runs("tests.yml") == ["bash .ci/run"]
    ci = (REPO / ".ci" / "run").read_text()
    # .ci/run installs what the tests need and runs the README's test commands, in order; the
    # docker engine and image serve only the slow tier, so they come after the fast one
    order = [ci.index(cmd) for cmd in ("make arm64", "make browser", "make sshd\n", "make test\n", "make docker\n",
                                       "make image\n", "make test-slow")]
    assert order == sorted(order)
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make test-slow" in readme



def test_the_docs_list_the_steps_ci_runs_in_order():
    """docs/team-workflow.md's row for tests.yml and docs/testing.md's CI paragraph name every
    `make` step of .ci/run, in its order, and no other."""
    steps = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert steps[:2] == ["make arm64", "make browser"] and "make test-slow" in steps
    row = next(line for line in (REPO / "docs" / "team-workflow.md").read_text().splitlines()
               if line.startswith("| `.github/workflows/tests.yml`"))
    assert re.findall(r"`(make [a-z0-9-]+)`", row) == steps, row
    testing = (REPO / "docs" / "testing.md").read_text()
    paragraph = testing.split("**CI runs exactly `bash .ci/run`**", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"`(make [a-z0-9-]+)`", paragraph) == steps, paragraph

def test_the_pipeline_workflows_only_set_up_python_and_call_the_ci_entry_point():
    pipeline = yaml.safe_load((REPO / ".github/workflows/pipeline.yml").read_text())
    paths = pipeline[True]["push"]["paths"]
    assert pipeline[True]["push"]["branches"] == ["main"]
    assert {"params.yaml", "dvc.lock", "**.dvc"} <= set(paths) and any(p.startswith("src/") for p in paths)
    retrain = yaml.safe_load((REPO / ".github/workflows/retrain.yml").read_text())
    assert retrain[True]["schedule"][0]["cron"] == "0 3 * * 1"
    for workflow, extra in (("pipeline.yml", ""), ("retrain.yml", "--refresh-data ")):
        runs = _runs(workflow)
        assert len(runs) == 3 and runs[0].startswith("python -m pip install -c constraints.txt -e .")
        assert runs[-1].startswith(f"edgeqat ci run {extra}--github --push-git"), runs[-1]


@pytest.mark.parametrize("workflow", ["pipeline.yml", "retrain.yml"])
def test_workflows_that_commit_set_a_git_identity_first(workflow):
    """`edgeqat ci run` commits the results; a fresh runner has no user.name / user.email."""
    runs = _runs(workflow)
    ci = next(i for i, r in enumerate(runs) if r.startswith("edgeqat ci run"))
    before = "\n".join(runs[:ci])
    assert re.search(r"git config( --global)? user\.name \S", before), runs
    assert re.search(r"git config( --global)? user\.email \S+@\S+", before), runs
