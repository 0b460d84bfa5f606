"""validate: the registered variant on every device profile -> summary with verdicts, and the gate."""

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
    section: Output[Artifact],
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
    parity_samples: int,
) -> bool:
    """edgeqat.steps.validate; the returned ``passed`` feeds the pipeline's dsl.If around register.

    The section it ran with goes to ``section`` (JSON) rather than a second return value:
    kfp.local 2.17 skips a dsl.If branch whose condition reads a NamedTuple field (checked
    here), while a single bool output works."""
    import os

    from edgeqat.io import write_json
    from edgeqat.kfp_io import FP32_FILE, log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.validate import validate as step

    cfg = section_config("validate", locals())
    result = step(cfg, prepared.path, tflite.path, os.path.join(fp32_model.path, FP32_FILE), evaluation.path,
                  summary.path, report.path, devices_report.path, metrics.path)
    log_metrics(metrics, result)
    write_json(section.path, section_values("validate", cfg))
    return bool(result["passed"])
