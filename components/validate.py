"""validate: the registered variant on every device profile -> summary with verdicts, and the gate."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate(
    prepared: Input[Dataset],
    tflite: Input[Model],
    fp32_model: Input[Model],
    evaluation: Input[Artifact],
    summary: Output[Artifact],
    report: Output[Markdown],
    devices_report: Output[Artifact],
    metrics: Output[Metrics],
    model: str,
    variants: list,
    devices: list,
    required_devices: list,
    profiles_dir: str,
    max_accuracy_drop: float,
    latency_runs: int,
    emulate: bool,
    emulate_samples: int,
) -> NamedTuple("ValidateOutputs", [("passed", bool), ("config", dict)]):
    """edgeqat.steps.validate; ``passed`` feeds the pipeline's dsl.If around register."""
    import os

    from edgeqat.kfp_io import FP32_FILE, log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.validate import validate as step

    cfg = section_config("validate", locals())
    result = step(cfg, prepared.path, tflite.path, os.path.join(fp32_model.path, FP32_FILE), evaluation.path,
                  summary.path, report.path, devices_report.path, metrics.path)
    log_metrics(metrics, result)
    return bool(result["passed"]), section_values("validate", cfg)  # KFP maps a tuple onto the NamedTuple
