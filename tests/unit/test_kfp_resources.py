"""What the compiled pipeline asks a cluster for: every task's CPU and memory from the stage
table, an accelerator on the training stages only when asked, caching off for the MLflow stages."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO
from edgeqat.adapters.kfp.codegen import PARAMS_TASK
from edgeqat.stages import LIGHT, STAGES

TRAINING = {"train", "qat", "prune", "cluster"}


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
