"""What the compiled pipeline asks a cluster for: every task's CPU and memory from the stage
table, an accelerator on the training stages only when asked, caching off for the MLflow stages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from edgeqat.adapters.kfp.codegen import PARAMS_RESOURCES, PARAMS_TASK
from edgeqat.workspace.stages import LIGHT, STAGES

TRAINING = {"train", "qat", "prune", "cluster"}
EDGEQAT = Path(sys.executable).parent / "edgeqat"


def _executors(spec: dict) -> dict[str, dict]:
    """task name -> its container spec (tasks inside the gate's dsl.If included)."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    comp_of = {name: t["componentRef"]["name"] for d in dags for name, t in d["tasks"].items()}
    executors = spec["deploymentSpec"]["executors"]
    out = {}
    for task, comp in comp_of.items():
        label = spec["components"][comp].get("executorLabel")
        if label:
            out[task] = executors[label]["container"]
    return out


def _tasks(spec: dict) -> dict[str, dict]:
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {name: t for d in dags for name, t in d["tasks"].items()}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from edgeqat.pipelines.ops import compile_pipeline

    tmp = tmp_path_factory.mktemp("compiled")
    plain = yaml.safe_load(compile_pipeline(tmp / "plain.yaml", image="registry.example/edgeqat:1").read_text())
    gpu = yaml.safe_load(compile_pipeline(tmp / "gpu.yaml", image="registry.example/edgeqat:1",
                                          accelerator="nvidia.com/gpu").read_text())
    return plain, gpu


def test_every_task_requests_and_is_limited_to_its_stage_resources(compiled):
    plain, _ = compiled
    containers = _executors(plain)
    assert set(containers) == {s.name for s in STAGES} | {PARAMS_TASK}
    params_task = containers[PARAMS_TASK]["resources"]  # validates the parameters: the light stages' share
    assert (params_task["resourceCpuLimit"], params_task["resourceMemoryLimit"]) == (LIGHT.cpu_limit, LIGHT.memory_limit)
    for stage in STAGES:
        res, want = containers[stage.name]["resources"], stage.resources
        assert (res["resourceCpuRequest"], res["resourceCpuLimit"]) == (want.cpu_request, want.cpu_limit), stage.name
        assert (res["resourceMemoryRequest"], res["resourceMemoryLimit"]) == (want.memory_request, want.memory_limit)
        assert "accelerator" not in res, stage.name  # none unless asked for
        assert containers[stage.name]["image"] == "registry.example/edgeqat:1"


def test_the_committed_yaml_declares_resources_too():
    spec = yaml.safe_load((REPO / "pipelines" / "edge_pipeline.yaml").read_text())
    for name, container in _executors(spec).items():
        assert {"resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest",
                "resourceMemoryLimit"} <= set(container.get("resources", {})), name


def test_gpu_puts_one_accelerator_on_each_training_stage_only(compiled):
    _, gpu = compiled
    containers = _executors(gpu)
    for name, container in containers.items():
        acc = container["resources"].get("accelerator")
        if name in TRAINING:
            assert (acc["resourceCount"], acc["resourceType"]) == ("1", "nvidia.com/gpu"), name
        else:
            assert acc is None, name


def _accelerators(path: Path) -> dict[str, tuple[str, str] | None]:
    """task -> (count, type) of the accelerator it requests in a compiled YAML, or None."""
    out = {}
    for name, container in _executors(yaml.safe_load(path.read_text())).items():
        acc = container["resources"].get("accelerator")
        out[name] = (acc["resourceCount"], acc["resourceType"]) if acc else None
    return out


def test_the_cli_gpu_flag_puts_an_accelerator_on_the_training_stages_and_nothing_else(tmp_path):
    """`edgeqat pipeline compile --gpu`, as a user types it; the same command without it asks for none.
    A compiled package cannot gain one afterwards: submit refuses --gpu with it in one line."""
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(EDGEQAT), "pipeline", *args], cwd=tmp_path, capture_output=True, text=True)

    for name, flags in (("gpu.yaml", ["--gpu"]), ("plain.yaml", [])):
        proc = cli("compile", "--image", "registry.example/edgeqat:1", "--out", name, *flags)
        assert proc.returncode == 0, proc.stderr[-2000:]
    gpu, plain = _accelerators(tmp_path / "gpu.yaml"), _accelerators(tmp_path / "plain.yaml")
    assert {t for t, acc in gpu.items() if acc} == TRAINING
    assert all(gpu[t] == ("1", "nvidia.com/gpu") for t in TRAINING)
    assert set(plain) == set(gpu) and not any(plain.values())

    proc = cli("submit", "--host", "http://127.0.0.1:9", "--params", str(REPO / "params.yaml"),
               "--package", "plain.yaml", "--gpu")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert "--gpu: plain.yaml is already compiled; compile it with --gpu instead" in proc.stderr


def test_caching_on_for_compute_stages_off_for_mlflow_ones(compiled):
    plain, _ = compiled
    tasks = _tasks(plain)
    for stage in STAGES:
        enabled = tasks[stage.name].get("cachingOptions", {}).get("enableCache", False)
        assert enabled is stage.cached, stage.name
    assert {s.name for s in STAGES if not s.cached} == {"track", "register"}


def test_resource_quantities_are_kubernetes_quantities():
    import re

    for stage in STAGES:
        r = stage.resources
        for cpu in (r.cpu_request, r.cpu_limit):
            assert re.fullmatch(r"\d+(\.\d+)?m?", cpu), (stage.name, cpu)
        for mem in (r.memory_request, r.memory_limit):
            assert re.fullmatch(r"\d+(Ki|Mi|Gi)", mem), (stage.name, mem)
        assert _quantity(r.cpu_request) <= _quantity(r.cpu_limit), stage.name
        assert _quantity(r.memory_request) <= _quantity(r.memory_limit), stage.name
    assert {s.name for s in STAGES if s.resources.accelerator} == TRAINING


def _quantity(text: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_the_docs_table_gives_every_task_its_resources():
    """docs/kubeflow.md's table of what each task asks a cluster for, checked against the stage table
    (and the params task's share): every task once, with its requests, limits and accelerator."""
    text = (REPO / "docs" / "kubeflow.md").read_text()
    section = text.split("### Where tasks are scheduled", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| (\S+) / (\S+) \| (\S+) / (\S+) \| ([^|]+) \|$", section, re.M)
    want = {s.name: s.resources for s in STAGES} | {PARAMS_TASK: PARAMS_RESOURCES}
    listed: list[str] = []
    for names, cpu_req, cpu_lim, mem_req, mem_lim, accelerator in rows:
        for name in re.sub(r"\(.*?\)", "", names).replace("`", "").split(","):
            name = name.strip()
            listed.append(name)
            r = want[name]
            assert (cpu_req, cpu_lim, mem_req, mem_lim) == (r.cpu_request, r.cpu_limit, r.memory_request,
                                                            r.memory_limit), name
            assert accelerator.startswith("one with `--gpu`") is r.accelerator, name
    assert sorted(listed) == sorted(want)  # each task exactly once
