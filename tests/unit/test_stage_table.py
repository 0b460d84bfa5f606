"""The stage table drives the CLI, dvc.yaml, the KFP components and the DAG: generated files are
fresh, deps are complete, and a new stage needs only a table entry and a step function."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO
from edgeqat.adapters.dvc import code_deps, dvc_yaml
from edgeqat.adapters.generate import generated_files
from edgeqat.config import Params, load_params
from edgeqat.workspace.stages import STAGES, stage_params

BIN = Path(sys.executable).parent
TESTS = REPO / "tests"


def test_generated_files_are_fresh():
    stale = [str(p) for p, text in generated_files(load_params(REPO / "params.yaml"), root=REPO).items()
             if p.read_text() != text]
    assert stale == [], f"stale: {stale}; run `edgeqat generate`"


def test_each_stage_depends_on_the_keys_of_its_sections_and_every_module_its_step_imports():
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(doc) == [s.name for s in STAGES]
    qat = doc["qat"]
    # its section, the convert keys that say which of its models to build and how their weights are
    # scaled (QAT learns the scales), the global trust key
    assert set(qat["params"]) == {f"qat.{k}" for k in Params.model_fields["qat"].annotation.model_fields} | {
        "convert.variants", "convert.per_channel", "train.trust_model_code"}
    assert "convert.io_dtype" not in qat["params"]  # only the single keys, not convert's section
    # every stage that makes a QAT model re-runs when the weight granularity changes
    for name in ("qat", "prune", "cluster", "recommend", "convert"):
        assert "convert.per_channel" in doc[name]["params"], name
    assert not {k for k in doc["recommend"]["params"] if k.startswith("convert.")} - {"convert.per_channel"}
    # recommend reads the prune section (its candidates are fine-tuned with it): all of it
    assert {"prune.channel_fraction", "prune.target_sparsity", "prune.m_by_n"} <= set(doc["recommend"]["params"])
    # prune quantizes through compression.recipes, which QAT-wraps through compression.annotate
    for mod in ("src/edgeqat/compression/recipes.py", "src/edgeqat/compression/annotate.py", "src/edgeqat/steps/prune.py"):
        assert mod in doc["prune"]["deps"], mod
    assert "src/edgeqat/devices/profiles" in doc["validate"]["deps"]  # profile YAMLs are data the step reads
    assert "src/edgeqat/devices/profiles" not in doc["prepare"]["deps"]  # ...but not prepare's
    assert all(not d.startswith("src/edgeqat/steps/qat") for d in doc["prune"]["deps"])  # steps never import steps


def test_code_deps_follow_imports_inside_functions():
    files = {p.name for p in code_deps("edgeqat.steps.convert")}
    assert {"converter.py", "runtime.py", "inspect.py", "io.py"} <= files
    assert "tracking.py" not in files and "registry.py" not in files


def _scratch_repo(tmp_path: Path) -> Path:
    from integration.conftest import make_pipeline_repo, run

    repo = make_pipeline_repo(tmp_path / "proj", (REPO / "params.yaml").read_text())
    outs = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for entry in outs.values():  # every output, as empty files or folders, so DVC can record a lock
        for out in [*entry.get("outs", []), *entry.get("metrics", [])]:
            path = repo / (out if isinstance(out, str) else next(iter(out)))
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "placeholder").write_text("x")
    run([str(BIN / "dvc"), "commit", "-f", "-q"], repo)
    return repo


@pytest.mark.integration
def test_changing_quantize_marks_the_stages_that_quantize_changed_and_no_other(tmp_path):
    from integration.conftest import run

    repo = _scratch_repo(tmp_path)
    assert "up to date" in run([str(BIN / "dvc"), "status"], repo).stdout
    recipes = repo / "src" / "edgeqat" / "compression" / "recipes.py"
    recipes.write_text(recipes.read_text() + "\n# a change to quantize()\n")
    status = json.loads(run([str(BIN / "dvc"), "status", "--json"], repo).stdout)
    assert {"qat", "prune", "recommend"} <= set(status)
    assert "prepare" not in status and "train" not in status and "convert" not in status
    assert any("compression/recipes.py" in json.dumps(s) for s in status["prune"])


@pytest.mark.integration
def test_editing_a_string_in_a_presentation_module_leaves_dvc_status_clean(tmp_path):
    """Deps mean "results may change": a new progress line, error docstring or epoch-log message
    (adapters/dvc.py NOT_DEPS) re-runs no stage, while the same kind of edit to io.py re-runs all."""
    from integration.conftest import run

    repo = _scratch_repo(tmp_path)
    pkg = repo / "src" / "edgeqat"

    def edit(rel: str, old: str, new: str) -> None:
        path = pkg / rel
        text = path.read_text()
        assert old in text, f"{rel} no longer holds {old!r}: pick another string"
        path.write_text(text.replace(old, new, 1))

    def status() -> dict:
        return json.loads(run([str(BIN / "dvc"), "status", "--json"], repo).stdout)

    assert status() == {}
    edit("progress.py", 'PREFIX = "[edgeqat]"', 'PREFIX = "[edgeqat:]"')
    edit("progress.py", '"""4s, 2m05s, 1h03m."""', '"""4s, 2m05s or 1h03m."""')
    edit("errors.py", "A parameter is unknown", "A parameter is not known")
    edit("workspace/observe.py", "live logging of", "live logging for")
    assert status() == {}
    # the control: a string in a module that writes results (io.py) marks every stage changed
    edit("io.py", 'print(f"[edgeqat] {redact(msg)}"', 'print(f"[edgeqat:] {redact(msg)}"')
    assert set(status()) == {s.name for s in STAGES}


def test_a_new_stage_needs_only_a_table_entry_and_a_step(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    import toy_stage

    # dvc.yaml
    doc = yaml.safe_load(dvc_yaml(Params(), toy_stage.TABLE))["stages"]
    assert doc["toy"]["cmd"] == "edgeqat stage toy" and "data/prepared" in doc["toy"]["deps"]
    assert {"metrics/toy.json": {"cache": False}} in doc["toy"]["outs"]  # committed, outside the headline metrics
    assert "prepare.seed" in doc["toy"]["params"] and "convert.variants" in doc["toy"]["params"]

    # the CLI
    import typer

    from edgeqat.adapters.cli.stages import install
    from edgeqat.steps.prepare import prepare

    app, stage_app = typer.Typer(), typer.Typer()
    app.add_typer(stage_app, name="stage")
    install(stage_app, app, toy_stage.TABLE)
    (tmp_path / "params.yaml").write_text("prepare:\n  image_size: 8\n")
    prepare(load_params(tmp_path / "params.yaml").prepare, tmp_path / "data" / "prepared")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["stage", "toy"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "reports" / "toy.json").read_text())["classes"] == 10
    assert json.loads((tmp_path / "logs" / "timings" / "toy.json").read_text())["stage"] == "toy"

    # the compiled KFP pipeline, full table plus the toy stage
    comp = _toy_components(tmp_path, toy_stage.TABLE)
    from kfp import compiler

    from edgeqat.pipelines.edge_pipeline import build_pipeline

    compiler.Compiler().compile(build_pipeline(table=toy_stage.TABLE, components=comp.COMPONENTS), str(tmp_path / "p.yaml"))
    spec = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert "toy" in spec["root"]["dag"]["tasks"]
    assert spec["root"]["dag"]["tasks"]["toy"]["inputs"]["artifacts"]["prepared"]["taskOutputArtifact"]["producerTask"] == "prepare"


def _toy_components(tmp_path: Path, table, table_ref: str = "toy_stage:TABLE") -> object:
    import importlib

    from edgeqat.adapters.kfp.codegen import components_source

    (tmp_path / "toy_components.py").write_text(components_source(table, table_ref=table_ref))
    sys.path.insert(0, str(tmp_path))
    try:
        sys.modules.pop("toy_components", None)
        return importlib.import_module("toy_components")
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.integration
def test_the_toy_stage_runs_in_kfp_local_with_the_configs_dvc_gives_it(tmp_path, monkeypatch):
    """kfp.local runs prepare -> toy; each step receives the same config objects as under the
    CLI that dvc.yaml runs."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    import toy_stage
    from kfp import local

    from edgeqat.adapters.kfp.params import to_pipeline_values
    from edgeqat.pipelines.edge_pipeline import build_pipeline

    params = load_params(_write(tmp_path / "params.yaml", "prepare:\n  image_size: 8\n  seed: 7\nconvert:\n  variants: quick\n"))
    comp = _toy_components(tmp_path, toy_stage.MINI)
    kfp_cfg, cli_cfg = tmp_path / "kfp-configs", tmp_path / "cli-configs"
    monkeypatch.setenv("EDGEQAT_RECORD_CONFIGS", str(kfp_cfg))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"), raise_on_error=True)
    pipe = build_pipeline(table=toy_stage.MINI, components=comp.COMPONENTS)
    task = pipe(**{**to_pipeline_values(params), "mlflow_tracking_uri": "", "run_tags": {}})
    job = Path(task.output.path).parents[1]  # <root>/<run>/prepare/prepared: the pipeline's first artifact
    assert (job / "prepare" / "prepared" / "meta.json").is_file()
    assert json.loads((job / "toy" / "toy_report").read_text())["classes"] == 10

    # the same stages through the CLI, as dvc.yaml runs them
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(tmp_path / "params.yaml", ws / "params.yaml")
    env = {**os.environ, "EDGEQAT_RECORD_CONFIGS": str(cli_cfg)}
    code = ("import sys, typer; sys.path.insert(0, %r)\n"
            "import toy_stage\nfrom edgeqat.adapters.cli.stages import install\n"
            "app, st = typer.Typer(), typer.Typer(); app.add_typer(st, name='stage'); install(st, app, toy_stage.TABLE)\n"
            "app(['stage', sys.argv[1]])\n") % str(TESTS)
    for name in ("prepare", "toy"):
        proc = subprocess.run([sys.executable, "-c", code, name], cwd=ws, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("prepare", "toy"):
        assert json.loads((kfp_cfg / f"{name}.json").read_text()) == json.loads((cli_cfg / f"{name}.json").read_text())
    assert json.loads((ws / "reports" / "toy.json").read_text())["seed"] == 7
    # a single key of another section (Stage.keys) arrives as its keyword, the named set expanded
    assert json.loads((kfp_cfg / "toy.json").read_text())["variants"] == ["fp32", "ptq_int8", "qat_int8"]
    assert json.loads((ws / "reports" / "toy.json").read_text())["variants"] == ["fp32", "ptq_int8", "qat_int8"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.integration
def test_a_stage_taking_every_section_gets_the_values_set_when_the_run_is_started(tmp_path, monkeypatch, capfd):
    """On KFP such a stage (track, register) takes one parameter, the params task's JSON: the
    pipeline's per-key parameters, as a person sets them when starting a run, still reach its
    step; a bad one stops the run at the params task, naming the key, before that stage runs."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    import toy_stage
    from kfp import local

    from edgeqat.adapters.kfp.params import to_pipeline_values
    from edgeqat.pipelines.edge_pipeline import build_pipeline

    comp = _toy_components(tmp_path, toy_stage.MINI_ALL, "toy_stage:MINI_ALL")
    assert "params" in comp.COMPONENTS and "toy_all" in comp.COMPONENTS
    pipe = build_pipeline(table=toy_stage.MINI_ALL, components=comp.COMPONENTS)
    args = {**to_pipeline_values(load_params(_write(tmp_path / "params.yaml", "prepare:\n  image_size: 8\n"))),
            "mlflow_tracking_uri": "", "run_tags": {}}
    # what a person overrides when submitting: register's and track's settings among them
    args.update(register__max_size_bytes="123456", register__required_devices='["rpi4"]', track__experiment="submitted",
                train__trust_model_code=True, qat__epochs=3)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"), raise_on_error=True)
    task = pipe(**args)
    job = Path(task.output.path).parents[1]
    got = json.loads((job / "toy-all" / "toy_params").read_text())["params"]  # KFP names the task toy-all
    assert got["register"]["max_size_bytes"] == 123456 and got["register"]["required_devices"] == ["rpi4"]
    assert got["track"]["experiment"] == "submitted" and got["train"]["trust_model_code"] is True
    assert got["qat"]["epochs"] == 3 and got["prepare"]["image_size"] == 8

    # an unknown device: the params task refuses it as `edgeqat check-params` would
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp-bad"), raise_on_error=True)
    with pytest.raises(RuntimeError, match="params"):
        pipe(**{**args, "validate__devices": ["rpi4", "no_such_board"]})
    assert "validate.devices: unknown device(s) 'no_such_board'" in capfd.readouterr().out
    assert not list(tmp_path.glob("kfp-bad/*/toy-all"))  # the stage never started


def test_every_step_that_can_load_a_model_is_handed_the_trust_decision():
    """train.trust_model_code reaches every model load as an argument (no process-wide switch): a
    step that can reach edgeqat.models.io gets it in its train config or as its ``trust_model_code``
    keyword (Stage.keys), from the params the stage runs with."""
    import inspect

    from edgeqat.adapters.runner import step_configs, step_function
    from edgeqat.config import parse_params
    from edgeqat.workspace.stages import ALL, TRUST

    raw = Params().model_dump()
    raw["train"]["trust_model_code"] = True
    trusting = parse_params(raw)
    loaders = []
    for stage in STAGES:
        module = stage.step.partition(":")[0]
        if "io.py" not in {p.name for p in code_deps(module) if p.parent.name == "models"}:
            continue
        loaders.append(stage.name)
        first, kwargs = step_configs(stage, trusting)
        takes = "trust_model_code" in inspect.signature(step_function(stage)).parameters
        if stage.sections[0] in ("train", ALL):
            assert first.train.trust_model_code if stage.sections == (ALL,) else first.trust_model_code, stage.name
        else:
            assert takes and TRUST in stage.keys and kwargs["trust_model_code"] is True, stage.name
    assert {"qat", "prune", "cluster", "convert", "evaluate", "validate", "recommend", "train"} <= set(loaders)
    import edgeqat.models.io as model_io

    assert not hasattr(model_io, "set_trust_model_code")  # the old process global is gone
