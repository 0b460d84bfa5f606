"""The `edgeqat` command: thin adapter from argv (and DVC stages) to the step functions.

Nothing heavy is imported at module level, so `edgeqat --help` stays fast; TensorFlow
loads only inside the stages that need it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgeqat.errors import EdgeqatError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # Unexpected errors are one line + a log file (edgeqat.failure); --verbose shows them.
    pretty_exceptions_enable=False,
    help="edgeqat: Keras image model -> validated int8 TensorFlow Lite, as a reproducible DVC/MLflow pipeline.",
)
stage = typer.Typer(no_args_is_help=True, help="Run one pipeline stage (what dvc.yaml calls).")
app.add_typer(stage, name="stage")

from edgeqat.pipeline_cli import app as _pipeline_app  # noqa: E402  (imports no kfp)

app.add_typer(_pipeline_app, name="pipeline")

ParamsOpt = typer.Option(Path("params.yaml"), "--params", help="Parameters file (one section per stage).")
DataOpt = typer.Option(Path("data/prepared"), "--data", help="Prepared splits folder.")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", help="On an unexpected error, print the full traceback too."),
) -> None:
    """Options for every command (read by main() before the command runs)."""


def _params(path: Path):
    """The run's params; their train.trust_model_code decides for every model this run loads."""
    from edgeqat.config import load_params
    from edgeqat.models.io import set_trust_model_code

    p = load_params(path)
    set_trust_model_code(p.train.trust_model_code)
    return p


@stage.command("prepare")
def stage_prepare(
    params: Path = ParamsOpt,
    out: Path = typer.Option(Path("data/prepared"), help="Output folder for the splits."),
    metrics: Path = typer.Option(Path("metrics/prepare.json")),
) -> None:
    """Raw data -> resized, stratified, sharded train/val/test/calib splits."""
    from edgeqat.steps.prepare import prepare

    prepare(_params(params).prepare, out, metrics)


@stage.command("train")
def stage_train(
    params: Path = ParamsOpt,
    data: Path = DataOpt,
    out: Path = typer.Option(Path("models/fp32.keras")),
    metrics: Path = typer.Option(Path("metrics/train.json")),
    history: Path = typer.Option(Path("plots/train_history.csv")),
    tensorboard: Optional[Path] = typer.Option(None, help="TensorBoard log folder (scalars per epoch)."),
) -> None:
    """FP32 baseline (or the user's pretrained model, train.from_model)."""
    from edgeqat.steps.train import train

    train(_params(params).train, data, out, metrics, history, tensorboard_dir=tensorboard)


@stage.command("qat")
def stage_qat(
    params: Path = ParamsOpt,
    data: Path = DataOpt,
    model: Path = typer.Option(Path("models/fp32.keras"), help="FP32 model to quantize."),
    out: Path = typer.Option(Path("models/qat.h5")),
    metrics: Path = typer.Option(Path("metrics/qat.json")),
    history: Path = typer.Option(Path("plots/qat_history.csv")),
    mixed_out: Path = typer.Option(Path("models/mixed.h5"), help="Mixed-precision QAT model (qat.keep_float)."),
    sensitivity: Path = typer.Option(Path("reports/sensitivity.json"), help="Per-layer quantization sensitivity."),
    sensitivity_md: Path = typer.Option(Path("reports/sensitivity.md")),
    tensorboard: Optional[Path] = typer.Option(None, help="TensorBoard log folder (scalars and fake-quant ranges)."),
) -> None:
    """Quantization-aware fine-tuning of the FP32 model (plain and mixed precision)."""
    from edgeqat.steps.qat import qat

    qat(_params(params).qat, data, model, out, metrics, history,
        mixed_out=mixed_out, sensitivity_json=sensitivity, sensitivity_md=sensitivity_md, tensorboard_dir=tensorboard)


@stage.command("prune")
def stage_prune(
    params: Path = ParamsOpt,
    data: Path = DataOpt,
    model: Path = typer.Option(Path("models/fp32.keras"), help="FP32 model to prune."),
    pqat_out: Path = typer.Option(Path("models/pqat.h5"), help="Pruned, pruning-preserving QAT model."),
    channel_pruned_out: Path = typer.Option(Path("models/channel_pruned_qat.h5"), help="Channel-pruned QAT model."),
    metrics: Path = typer.Option(Path("metrics/prune.json")),
    history: Path = typer.Option(Path("plots/prune_history.csv"), help="Per pruning epoch: loss, accuracy, sparsity."),
) -> None:
    """Magnitude pruning + pruning-preserving QAT, and structured channel pruning + QAT."""
    from edgeqat.steps.prune import prune

    prune(_params(params).prune, data, model, pqat_out, channel_pruned_out, metrics, history)


@stage.command("convert")
def stage_convert(
    params: Path = ParamsOpt,
    data: Path = DataOpt,
    fp32: Path = typer.Option(Path("models/fp32.keras")),
    qat: Path = typer.Option(Path("models/qat.h5")),
    out: Path = typer.Option(Path("models/tflite")),
    metrics: Path = typer.Option(Path("metrics/convert.json")),
    mixed: Path = typer.Option(Path("models/mixed.h5")),
    pqat: Path = typer.Option(Path("models/pqat.h5")),
    channel_pruned: Path = typer.Option(Path("models/channel_pruned_qat.h5")),
) -> None:
    """Keras models -> .tflite variants and model_card.json."""
    from edgeqat.steps.convert import convert

    convert(_params(params).convert, data, fp32, qat, out, metrics,
            mixed_model=mixed, pqat_model=pqat, channel_pruned_model=channel_pruned)


@stage.command("evaluate")
def stage_evaluate(
    params: Path = ParamsOpt,
    data: Path = DataOpt,
    models: Path = typer.Option(Path("models/tflite"), help="Folder of .tflite files and their model card."),
    fp32: Path = typer.Option(Path("models/fp32.keras")),
    summary: Path = typer.Option(Path("reports/evaluation.json"), help="The table before device validation."),
    report: Path = typer.Option(Path("reports/evaluation.md")),
    confusion: Path = typer.Option(Path("plots/confusion.csv")),
    metrics: Path = typer.Option(Path("metrics/evaluate.json")),
    pareto: Path = typer.Option(Path("reports/pareto.png"), help="Accuracy-vs-size plot of every variant."),
) -> None:
    """Accuracy, size and latency of every .tflite through LiteRT."""
    from edgeqat.steps.evaluate import evaluate

    evaluate(_params(params).evaluate, data, models, fp32, summary, report, confusion, metrics, pareto_png=pareto)


@stage.command("track")
def stage_track(
    params: Path = ParamsOpt,
    metrics_dir: Path = typer.Option(Path("metrics")),
    plots_dir: Path = typer.Option(Path("plots")),
    models: Path = typer.Option(Path("models")),
    reports: Path = typer.Option(Path("reports")),
    out: Path = typer.Option(Path("reports/mlflow_run.json"), help="Where to write the run id."),
    tag: list[str] = typer.Option([], help="Extra run tag KEY=VALUE (repeatable)."),
    tensorboard: Path = typer.Option(Path("logs/tensorboard"), help="TensorBoard logs, logged when present."),
) -> None:
    """Log the whole execution (params, every stage's metrics, curves, models, report) to MLflow."""
    from edgeqat.steps.track import track

    from edgeqat.provenance import parse_tags

    p = _params(params)
    artifacts = {"models": models, "reports": reports, "plots": plots_dir}
    if tensorboard.is_dir():
        artifacts["tensorboard"] = tensorboard
    track(p.track, p, metrics_dir, plots_dir, artifacts, out, extra_tags=parse_tags(tag))


@app.command("report")
def report_cmd(summary: Path = typer.Option(Path("reports/summary.json"))) -> None:
    """Print the comparison table of the last evaluation."""
    from edgeqat.io import read_json
    from edgeqat.report import summary_markdown

    if not summary.is_file():
        raise EdgeqatError(f"{summary}: not found; run the pipeline first (dvc repro)")
    data = read_json(summary)
    try:
        text = summary_markdown(data)
    except (AttributeError, KeyError, TypeError, ValueError) as err:  # valid JSON, but not a summary
        raise EdgeqatError(f"{summary}: not an edgeqat summary ({type(err).__name__}: {err}); rerun the pipeline") from None
    typer.echo(text)


@app.command("check-params")
def check_params(params: Path = ParamsOpt) -> None:
    """Validate a parameters file without running anything."""
    _params(params)
    typer.echo(f"{params}: ok")


@app.command("ui")
def ui_hint() -> None:
    """Say how to open the MLflow UI on the run store this project logs to."""
    from edgeqat.tracking import tracking_uri

    uri = tracking_uri()
    if uri.startswith("sqlite:"):
        typer.echo(f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000   # then open http://127.0.0.1:5000")
    else:
        typer.echo(f"runs are logged to {uri}: open it in a browser")


from edgeqat.cli_registry import install as _install_registry_commands  # noqa: E402

_install_registry_commands(app, stage)

from edgeqat.cli_devices import install as _install_device_commands  # noqa: E402

_install_device_commands(app, stage)

from edgeqat.cli_recommend import install as _install_recommend_commands  # noqa: E402

_install_recommend_commands(app, stage)


def main() -> None:
    argv = sys.argv[1:]
    try:
        app()
    except EdgeqatError as err:
        print(f"edgeqat: error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 - the last resort: one line and a log, never a raw dump
        from edgeqat import failure

        if failure.verbose(argv):
            import traceback

            traceback.print_exc()
        print(failure.report(typer.main.get_command(app), argv, err), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
