"""The KFP adapter: parameter mapping both ways, the compiled YAML, the components' shape."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap

import pytest
import yaml

from conftest import REPO
from edgeqat.config import Params, parse_params
from edgeqat.errors import ConfigError
from edgeqat.adapters.kfp.params import (
    decode,
    dotted_keys,
    dotted_name,
    from_pipeline_values,
    kfp_name,
    kinds,
    params_from_sections,
    section_config,
    sections_values,
    to_pipeline_values,
)

COMMITTED = REPO / "pipelines" / "edge_pipeline.yaml"
KFP_TYPES = {"str": "STRING", "optional_str": "STRING", "optional_json": "STRING", "int": "NUMBER_INTEGER",
             "float": "NUMBER_DOUBLE", "bool": "BOOLEAN", "list": "LIST"}


def _root_parameters(spec: dict) -> dict:
    return spec["root"]["inputDefinitions"]["parameters"]


def test_naming_rule_is_one_to_one():
    keys = dotted_keys()
    names = [kfp_name(k) for k in keys]
    assert "qat__epochs" in names and kfp_name("qat.epochs") == "qat__epochs"
    assert len(set(names)) == len(keys)
    assert all(n.isidentifier() for n in names)
    assert [dotted_name(n) for n in names] == keys
    for bad in ("qat", "qat.a.b", "qat__a__b"):
        with pytest.raises(ConfigError):
            dotted_name(bad) if "__" in bad else kfp_name(bad)


def _non_default_params() -> Params:
    raw = Params().model_dump()
    raw["train"].update(from_model="models/mine.keras", epochs=3)
    raw["qat"].update(finetune_source="npz", finetune_path="data/site.npz")
    raw["convert"]["variants"] = ["fp32", "ptq_int8", "qat_int8"]
    raw["evaluate"].update(reference="fp32", headline="qat_int8")
    if "register" in raw:
        raw["register"].update(max_size_bytes=123456, required_devices=[], variant="qat_int8")
    return parse_params(raw)


@pytest.mark.parametrize("params", [Params(), _non_default_params()], ids=["defaults", "changed"])
def test_values_map_to_pipeline_arguments_and_back(params):
    values = to_pipeline_values(params)
    assert set(values) == {kfp_name(k) for k in dotted_keys()}
    for name, kind in kinds().items():
        if kind.startswith("optional"):
            assert isinstance(values[name], str)
    assert values["train__from_model"] == (params.train.from_model or "")
    assert values["convert__variants"] == list(params.convert.variants)
    assert from_pipeline_values(values) == params
    # As KFP hands them over inside a struct: every value as text.
    as_text = {n: (v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip()) for n, v in values.items()}
    assert from_pipeline_values(as_text) == params
    assert params_from_sections(sections_values(params)) == params


def test_null_and_list_forms():
    assert to_pipeline_values(Params())["train__weights"] == ""
    assert decode("", "optional_str") is None and decode("w.h5", "optional_str") == "w.h5"
    assert decode("", "optional_json") is None and decode("[]", "optional_json") == []
    assert decode('["pi4"]', "optional_json") == ["pi4"] and decode("5.0", "int") == 5
    assert decode("[1.0, 2.0]", "list") == [1.0, 2.0] and decode("true", "bool") is True


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match=r"qat\.epochs"):
        from_pipeline_values({"qat__epochs": 0})
    with pytest.raises(ConfigError, match="qat__nope"):
        from_pipeline_values({"qat__nope": 1})
    with pytest.raises(ConfigError, match=r"qat\.epochs"):
        section_config("qat", {"epochs": "zero", "prepared": object()})
    cfg = section_config("train", {"from_model": "", "epochs": "2.0", "fp32_model": object()})
    assert cfg.from_model is None and cfg.epochs == 2


def test_compiled_pipeline_is_fresh(tmp_path):
    from edgeqat.components import DEFAULT_IMAGE
    from edgeqat.pipelines.ops import compile_pipeline

    fresh = compile_pipeline(tmp_path / "p.yaml", image=DEFAULT_IMAGE).read_text()
    assert COMMITTED.read_text() == fresh, "pipelines/edge_pipeline.yaml is stale: run `edgeqat generate`"


def test_every_pipeline_parameter_is_a_params_key_and_back():
    from edgeqat.pipelines.edge_pipeline import RUNTIME_PARAMETERS

    spec = yaml.safe_load(COMMITTED.read_text())
    declared = _root_parameters(spec)
    mirrored = {n for n in declared if "__" in n}
    assert {dotted_name(n) for n in mirrored} == set(dotted_keys())
    assert set(declared) - mirrored == set(RUNTIME_PARAMETERS)
    from edgeqat.adapters.run_params import default_params, load_run_params

    # the defaults as a run sees them (validate.devices: shipped resolved to the list)
    defaults, k = to_pipeline_values(default_params()), kinds()
    for name in mirrored:
        assert declared[name]["parameterType"] == KFP_TYPES[k[name]], name
        assert declared[name]["defaultValue"] == defaults[name], name
    # and params.yaml itself (= the code defaults), as a run loads it, maps onto them
    assert from_pipeline_values({n: declared[n]["defaultValue"] for n in mirrored}) == load_run_params(
        REPO / "params.yaml")


def test_each_component_takes_its_stage_keys_and_ports_and_nothing_else():
    from edgeqat.adapters.kfp.codegen import PARAMS_JSON, PARAMS_TASK, RUNTIME, stage_keys
    from edgeqat.adapters.kfp.params import kfp_name
    from edgeqat.components.generated import COMPONENTS
    from edgeqat.pipelines.edge_pipeline import unwired_keys
    from edgeqat.workspace.stages import ALL, STAGES

    assert unwired_keys() == []
    assert list(COMPONENTS) == [PARAMS_TASK] + [s.name for s in STAGES]
    # the params task takes every key; track and register take what it made of them, as one parameter
    assert set(COMPONENTS[PARAMS_TASK].component_spec.inputs) == {kfp_name(k) for k in dotted_keys()}
    for stage in STAGES:
        spec = COMPONENTS[stage.name].component_spec
        params = {n for n, i in (spec.inputs or {}).items() if not i.type.startswith("system.")}
        keys = {PARAMS_JSON} if stage.sections == (ALL,) else {kfp_name(k) for k in stage_keys(stage)}
        assert params == keys | {n for n, _ in RUNTIME}, stage.name
        artifacts_in = {n for n, i in (spec.inputs or {}).items() if i.type.startswith("system.")}
        assert artifacts_in == {p.name for p in stage.inputs if p.kfp} | {f.importer for f in stage.file_params if f.importer}
        outs = set(spec.outputs or {}) - {"Output"}
        assert outs == {p.name for p in stage.outputs if p.kfp} | {n for n, _ in stage.kfp_only_outputs}


def test_component_bodies_only_hand_their_arguments_to_the_runner():
    from edgeqat.adapters.kfp.codegen import PARAMS_TASK
    from edgeqat.components.generated import COMPONENTS

    for name, component in COMPONENTS.items():
        body = ast.parse(textwrap.dedent(inspect.getsource(component.python_func))).body[0].body
        statements = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        assert len(statements) == 2, name  # the import and the return
        imp, ret = statements
        assert isinstance(imp, ast.ImportFrom) and imp.module == "edgeqat.adapters.kfp.runner", name
        call = "run_params(locals())" if name == PARAMS_TASK else f"run_component({name!r}, locals()"
        assert isinstance(ret, ast.Return) and ast.unparse(ret.value).startswith(call), name


def test_import_variant_reads_data_and_model_from_uri_parameters(tmp_path):
    from edgeqat.pipelines.ops import compile_pipeline

    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", data_from_uri=True, model_from_uri=True).read_text())
    declared = _root_parameters(spec)
    for uri in ("data_uri", "pretrained_model_uri"):
        assert "defaultValue" not in declared[uri] and not declared[uri].get("isOptional")
    importers = [e["importer"] for e in spec["deploymentSpec"]["executors"].values() if "importer" in e]
    assert sorted(i["typeSchema"]["schemaTitle"] for i in importers) == ["system.Dataset", "system.Model"]
    assert all(i["artifactUri"]["runtimeParameter"] == "uri" for i in importers)
    tasks = spec["root"]["dag"]["tasks"]
    assert "raw_data" in tasks["prepare"]["inputs"]["artifacts"]
    assert "pretrained_model" in tasks["train"]["inputs"]["artifacts"]
    # preflight reads the same model before training: from the same importer task
    assert tasks["preflight"]["inputs"]["artifacts"]["pretrained_model"] == tasks["train"]["inputs"]["artifacts"]["pretrained_model"]


def test_unwired_non_default_key_is_refused(monkeypatch):
    from edgeqat.errors import EdgeqatError
    from edgeqat.pipelines import edge_pipeline, ops

    monkeypatch.setattr(edge_pipeline, "unwired_keys", lambda table=None: ["qat.epochs"])
    raw = Params().model_dump()
    raw["qat"]["epochs"] = 5
    with pytest.raises(EdgeqatError, match=r"qat\.epochs: not wired"):
        ops.pipeline_arguments(parse_params(raw))
    assert ops.pipeline_arguments(Params())["qat__epochs"] == Params().qat.epochs


def test_kfp_cron():
    from edgeqat.errors import EdgeqatError
    from edgeqat.pipelines.ops import kfp_cron

    assert kfp_cron("0 3 * * 1") == "0 0 3 * * 1"
    assert kfp_cron("0 0 3 * * 1") == "0 0 3 * * 1"
    with pytest.raises(EdgeqatError, match="5 fields"):
        kfp_cron("3 * *")


def test_cli_help_imports_neither_kfp_nor_tensorflow():
    code = "import sys, edgeqat.adapters.cli.app; print(sorted({m.split('.')[0] for m in sys.modules} & {'kfp', 'tensorflow', 'mlflow'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("params", [Params(), _non_default_params()], ids=["defaults", "changed"])
def test_the_params_task_hands_on_the_params_it_was_given(params):
    from edgeqat.adapters.kfp.runner import params_from_json, run_params

    from edgeqat.adapters.run_params import checked

    text = run_params({**to_pipeline_values(params), "unrelated": 1})
    assert params_from_json(text, "track component") == checked(params, "test")  # `shipped` resolved
    with pytest.raises(ConfigError, match="track component: params_json is not a JSON params document"):
        params_from_json("", "track component")
    with pytest.raises(ConfigError, match=r"register\.max_size_bytes"):
        params_from_json('{"register": {"max_size_bytes": -1}}', "register component")
    with pytest.raises(ConfigError, match=r"pipeline parameters: invalid parameters\n  validate.devices: unknown device"):
        run_params({**to_pipeline_values(params), "validate__devices": [*params.validate.devices, "no_such_board"]})


def test_track_and_register_take_one_params_parameter_fed_by_every_pipeline_parameter():
    from edgeqat.adapters.kfp.codegen import PARAMS_JSON, PARAMS_TASK, RUNTIME

    spec = yaml.safe_load(COMMITTED.read_text())
    runtime = {n for n, _ in RUNTIME}
    for name in ("track", "register"):
        inputs = spec["components"][f"comp-{name}"]["inputDefinitions"]["parameters"]
        assert set(inputs) == {PARAMS_JSON} | runtime, name
    track = spec["root"]["dag"]["tasks"]["track"]["inputs"]["parameters"][PARAMS_JSON]
    assert track["taskOutputParameter"]["producerTask"] == PARAMS_TASK
    gate = spec["components"]["comp-condition-1"]["dag"]["tasks"]["register"]["inputs"]["parameters"][PARAMS_JSON]
    assert gate["componentInputParameter"].endswith(PARAMS_TASK + "-Output")  # through the dsl.If, from the same task
    # every pipeline parameter a person sets reaches the params task under its own name
    fed = spec["root"]["dag"]["tasks"][PARAMS_TASK]["inputs"]["parameters"]
    assert {n: v["componentInputParameter"] for n, v in fed.items()} == {kfp_name(k): kfp_name(k) for k in dotted_keys()}
