"""recommend: per device, the best deployable model among the compression strategies."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def recommend(
    prepared: Input[Dataset],
    tflite: Input[Model],
    fp32_model: Input[Model],
    qat_model: Input[Model],
    recommended: Output[Model],
    report: Output[Artifact],
    metrics: Output[Metrics],
    enabled: bool,
    devices: list,
    budget_accuracy_drop: float,
    max_minutes: float,
    sparsities: list,
    channel_fractions: list,
    latency_runs: int,
    prune_config: dict,
) -> dict:
    """edgeqat.steps.recommend (a one-line report when recommend.enabled is false)."""
    import os

    from edgeqat.kfp_io import FP32_FILE, QAT_FILE, log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.recommend import recommend as step

    cfg = section_config("recommend", locals())
    prune_cfg = section_config("prune", prune_config)
    result = step(cfg, prune_cfg, prepared.path, tflite.path, os.path.join(fp32_model.path, FP32_FILE),
                  os.path.join(qat_model.path, QAT_FILE), report.path, recommended.path)
    log_metrics(metrics, result)
    return section_values("recommend", cfg)
