"""qat: quantization-aware fine-tuning of the FP32 model."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def qat(
    prepared: Input[Dataset],
    fp32_model: Input[Model],
    qat_model: Output[Model],
    mixed_model: Output[Model],
    sensitivity: Output[Artifact],
    sensitivity_report: Output[Markdown],
    history: Output[Dataset],
    metrics: Output[Metrics],
    epochs: int,
    learning_rate: float,
    batch_size: int,
    finetune_source: str,
    finetune_path: str,
    seed: int,
    keep_float: list,
    auto_keep_float: bool,
    max_accuracy_drop: float,
) -> dict:
    """QAT and mixed-precision models (edgeqat.steps.qat), each a folder holding its .h5."""
    import os

    from edgeqat.kfp_io import FP32_FILE, MIXED_FILE, QAT_FILE, log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.qat import qat as step

    cfg = section_config("qat", locals())
    fp32 = os.path.join(fp32_model.path, FP32_FILE)
    out = os.path.join(qat_model.path, QAT_FILE)
    mixed = os.path.join(mixed_model.path, MIXED_FILE)
    result = step(cfg, prepared.path, fp32, out, metrics.path, history.path, mixed_out=mixed,
                  sensitivity_json=sensitivity.path, sensitivity_md=sensitivity_report.path)
    log_metrics(metrics, result)
    return section_values("qat", cfg)  # the section it ran with, for track
