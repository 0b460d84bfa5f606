"""`edgeqat pipeline ...`: the Kubeflow Pipelines adapter (compile, local run, submit, schedule).

kfp is imported inside the commands only (through ``edgeqat.pipelines.ops``), so
``edgeqat --help`` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from edgeqat.errors import EdgeqatError

app = typer.Typer(no_args_is_help=True, help="Kubeflow Pipelines: compile, run locally (kfp.local), submit, schedule.")

ParamsOpt = typer.Option(Path("params.yaml"), "--params", help="Parameters file; every key becomes a pipeline argument.")
PackageOpt = typer.Option(None, "--package", help="A compiled pipeline YAML to use instead of compiling now.")
ImageOpt = typer.Option(None, "--image", help="Component image a cluster can pull (default: $EDGEQAT_IMAGE, else the tag `make image` built).")
GpuOpt = typer.Option(False, "--gpu", help="The training stages (train, qat, prune, cluster) each request one accelerator.")
AcceleratorOpt = typer.Option("nvidia.com/gpu", "--accelerator", help="The accelerator resource --gpu requests.")
ExperimentOpt = typer.Option("edgeqat", "--experiment", help="KFP experiment.")
MlflowOpt = typer.Option(None, "--mlflow-uri", help="MLflow server the tasks log to (default: $MLFLOW_TRACKING_URI).")
DataUriOpt = typer.Option(None, "--data-uri", help="Raw data URI (gs://, s3://, minio://) imported with dsl.importer for prepare.")
ModelUriOpt = typer.Option(None, "--model-uri", help="Pretrained FP32 model URI imported with dsl.importer (skips training).")
TagOpt = typer.Option([], "--tag", help="Extra MLflow run tag KEY=VALUE (repeatable).")
OutOpt = typer.Option(None, "--out", help="Write the result (ids) as JSON here.")


def _tags(items: list[str]) -> dict[str, str]:
    from edgeqat.workspace.provenance import parse_tags

    return parse_tags(items)


def _package(tmp: Path, package: Optional[Path], image: Optional[str], data_uri: Optional[str], model_uri: Optional[str],
             accelerator: Optional[str] = None) -> Path:
    """The compiled pipeline a cluster runs: ``package`` as given, else compiled now; either way
    naming an image a cluster can pull."""
    from edgeqat.adapters.kfp.images import check_package, resolve_image
    from edgeqat.pipelines.ops import compile_pipeline

    if package is not None:
        if not package.is_file():
            raise EdgeqatError(f"{package}: compiled pipeline not found (edgeqat pipeline compile)")
        if accelerator:
            raise EdgeqatError(f"--gpu: {package} is already compiled; compile it with --gpu instead")
        check_package(package)
        return package
    return compile_pipeline(tmp / "edge_pipeline.yaml", image=resolve_image(image), accelerator=accelerator,
                            data_from_uri=bool(data_uri), model_from_uri=bool(model_uri))


def _finish(result: dict, out: Optional[Path]) -> None:
    from edgeqat.pipelines.ops import save_result

    save_result(out, result)
    typer.echo(json.dumps(result, indent=2, sort_keys=True))


@app.command("compile")
def compile_cmd(
    out: Path = typer.Option(Path("pipelines/edge_pipeline.yaml"), "--out", help="Where to write the pipeline YAML."),
    image: Optional[str] = ImageOpt,
    data_from_uri: bool = typer.Option(False, "--data-from-uri", help="Add a dsl.importer for the raw data (parameter data_uri)."),
    model_from_uri: bool = typer.Option(False, "--model-from-uri", help="Add a dsl.importer for a pretrained model (parameter pretrained_model_uri)."),
    gpu: bool = GpuOpt,
    accelerator: str = AcceleratorOpt,
) -> None:
    """Compile the pipeline for a cluster, naming an image it can pull (the committed
    pipelines/edge_pipeline.yaml, which names a placeholder, is written by `edgeqat generate`)."""
    from edgeqat.adapters.kfp.images import resolve_image
    from edgeqat.pipelines.ops import compile_pipeline

    path = compile_pipeline(out, image=resolve_image(image), data_from_uri=data_from_uri, model_from_uri=model_from_uri,
                            accelerator=accelerator if gpu else None)
    typer.echo(f"wrote {path}")


@app.command("run")
def run_cmd(
    local: bool = typer.Option(False, "--local", help="Run through kfp.local on this machine (the only mode: use submit for a cluster)."),
    docker: bool = typer.Option(False, "--docker", help="Run every task in a container of the component image "
                                "(kfp.local DockerRunner), as a cluster would; needs an MLflow server (--mlflow-uri)."),
    image: Optional[str] = typer.Option(None, "--image", help="With --docker: the image (default: $EDGEQAT_IMAGE, else the tag `make image` built)."),
    mlflow_uri: Optional[str] = typer.Option(None, "--mlflow-uri", help="MLflow store the tasks log to (default: $MLFLOW_TRACKING_URI, "
                                             "else ./mlflow.db; --docker needs an http(s) server)."),
    params: Path = ParamsOpt,
    package: Optional[Path] = PackageOpt,
    pipeline_root: Path = typer.Option(Path("kfp_local"), "--pipeline-root", help="Where kfp.local writes task outputs."),
    cache: bool = typer.Option(False, "--cache", help="Reuse compute tasks that ran before in this pipeline root with the "
                               "same arguments (kfp.local's cache; not across code or image changes)."),
    tag: list[str] = TagOpt,
    out: Optional[Path] = OutOpt,
) -> None:
    """Run the whole pipeline locally: each task a subprocess of this Python (default), or a container
    (--docker). Exit 1 when validate failed a required device: the run is tracked, nothing registered."""
    from edgeqat.adapters.run_params import load_run_params
    from edgeqat.errors import GateFailed
    from edgeqat.pipelines.ops import run_local

    if not local:
        raise EdgeqatError("pipeline run: only --local is supported here; use `edgeqat pipeline submit --host URL` for a cluster")
    if image and not docker:
        raise EdgeqatError("pipeline run: --image names the image of a --docker run; add --docker")
    if image and package is not None:
        raise EdgeqatError(f"pipeline run: {package} names its own image; compile it with --image {image} instead")
    if package is not None and not package.is_file():
        raise EdgeqatError(f"{package}: compiled pipeline not found (edgeqat pipeline compile)")
    if docker and package is None:
        from edgeqat.adapters.kfp.images import resolve_image

        image = resolve_image(image)
    p = load_run_params(params)
    result = run_local(p, package=package, pipeline_root=pipeline_root, run_tags=_tags(tag),
                       docker=docker, image=image, mlflow_tracking_uri=mlflow_uri, cache=cache)
    _finish(result, out)
    if result.get("validation_passed") is False:
        raise GateFailed(f"validate: a required device failed (see {result['outputs']}/validate/summary_report); "
                         f"MLflow run {result['run_id']} is marked FAILED and nothing was registered")


def _request(params: Path, package: Optional[Path], image: Optional[str], experiment: str, name: str,
             mlflow_uri: Optional[str], data_uri: Optional[str], model_uri: Optional[str], tag: list[str],
             cron: Optional[str], tmp: Path, trigger: str, accelerator: Optional[str] = None):
    from edgeqat.adapters.run_params import load_run_params
    from edgeqat.pipelines.ops import run_request
    from edgeqat.workspace.provenance import git_info

    p = load_run_params(params)
    pkg = _package(tmp, package, image, data_uri, model_uri, accelerator)
    tags = {**git_info("."), "trigger": trigger, **_tags(tag)}
    return run_request(p, pkg, experiment=experiment, name=name,
                       mlflow_tracking_uri=mlflow_uri if mlflow_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", ""),
                       run_tags=tags, data_uri=data_uri, pretrained_model_uri=model_uri, cron=cron)


@app.command("submit")
def submit_cmd(
    host: str = typer.Option(..., "--host", help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline."),
    params: Path = ParamsOpt,
    package: Optional[Path] = PackageOpt,
    image: Optional[str] = ImageOpt,
    experiment: str = ExperimentOpt,
    run_name: Optional[str] = typer.Option(None, "--run-name", help="Default: edgeqat-<git commit>."),
    mlflow_uri: Optional[str] = MlflowOpt,
    data_uri: Optional[str] = DataUriOpt,
    model_uri: Optional[str] = ModelUriOpt,
    tag: list[str] = TagOpt,
    out: Optional[Path] = OutOpt,
    gpu: bool = GpuOpt,
    accelerator: str = AcceleratorOpt,
) -> None:
    """Submit one run to a Kubeflow Pipelines cluster (auth: $KFP_BEARER_TOKEN or $KF_PIPELINES_SA_TOKEN_PATH)."""
    import tempfile

    from edgeqat.pipelines.ops import submit
    from edgeqat.workspace.provenance import git_info

    name = run_name or f"edgeqat-{git_info('.')['git_commit'][:8]}"
    with tempfile.TemporaryDirectory(prefix="edgeqat-kfp-") as tmp:
        req = _request(params, package, image, experiment, name, mlflow_uri, data_uri, model_uri, tag, None, Path(tmp),
                       os.environ.get("EDGEQAT_TRIGGER", "manual"), accelerator if gpu else None)
        result = submit(host, req)
    _finish(result, out)


@app.command("schedule")
def schedule_cmd(
    host: str = typer.Option(..., "--host", help="KFP API endpoint."),
    cron: str = typer.Option(..., "--cron", help="Standard 5-field cron, e.g. '0 3 * * 1' (Mondays 03:00)."),
    params: Path = ParamsOpt,
    package: Optional[Path] = PackageOpt,
    image: Optional[str] = ImageOpt,
    experiment: str = ExperimentOpt,
    name: str = typer.Option("edgeqat-retrain", "--name", help="Recurring run name."),
    mlflow_uri: Optional[str] = MlflowOpt,
    data_uri: Optional[str] = DataUriOpt,
    model_uri: Optional[str] = ModelUriOpt,
    tag: list[str] = TagOpt,
    out: Optional[Path] = OutOpt,
    gpu: bool = GpuOpt,
    accelerator: str = AcceleratorOpt,
) -> None:
    """Create a KFP recurring run: scheduled retraining."""
    import tempfile

    from edgeqat.pipelines.ops import schedule

    with tempfile.TemporaryDirectory(prefix="edgeqat-kfp-") as tmp:
        req = _request(params, package, image, experiment, name, mlflow_uri, data_uri, model_uri, tag, cron, Path(tmp),
                       "schedule", accelerator if gpu else None)
        result = schedule(host, req)
    _finish(result, out)
