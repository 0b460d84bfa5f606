"""evaluate: every .tflite through LiteRT -> summary, report, confusion matrix."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    prepared: Input[Dataset],
    tflite: Input[Model],
    fp32_model: Input[Model],
    summary: Output[Artifact],
    report: Output[Markdown],
    confusion: Output[Dataset],
    headline_confusion: Output[ClassificationMetrics],
    pareto: Output[Artifact],
    metrics: Output[Metrics],
    num_threads: int,
    latency_runs: int,
    warmup_runs: int,
    reference: str,
    headline: str,
) -> dict:
    """summary.json, the Markdown table, the headline variant's confusion matrix (edgeqat.steps.evaluate)."""
    import os

    from edgeqat.io import read_json
    from edgeqat.kfp_io import FP32_FILE, confusion_matrix, log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.evaluate import evaluate as step

    cfg = section_config("evaluate", locals())
    fp32 = os.path.join(fp32_model.path, FP32_FILE)
    result = step(cfg, prepared.path, tflite.path, fp32, summary.path, report.path, confusion.path, metrics.path,
                  pareto_png=pareto.path)
    log_metrics(metrics, result)
    headline_confusion.log_confusion_matrix(*confusion_matrix(confusion.path, read_json(summary.path)["class_names"]))
    return section_values("evaluate", cfg)  # the section it ran with, for track
