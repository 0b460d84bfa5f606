"""prune: magnitude pruning -> pruning-preserving QAT, and channel pruning -> QAT."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prune(
    prepared: Input[Dataset],
    fp32_model: Input[Model],
    pqat_model: Output[Model],
    channel_pruned_model: Output[Model],
    metrics: Output[Metrics],
    target_sparsity: float,
    sparsity_scope: str,
    m_by_n: bool,
    epochs: int,
    pqat_epochs: int,
    channel_fraction: float,
    channel_epochs: int,
    channel_distillation: float,
    qat_epochs: int,
    learning_rate: float,
    qat_learning_rate: float,
    batch_size: int,
    seed: int,
) -> dict:
    """PQAT and channel-pruned QAT models (edgeqat.steps.prune), each a folder holding its .h5."""
    import os

    from edgeqat.kfp_io import CHANNEL_PRUNED_FILE, FP32_FILE, PQAT_FILE, log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.prune import prune as step

    cfg = section_config("prune", locals())
    fp32 = os.path.join(fp32_model.path, FP32_FILE)
    result = step(cfg, prepared.path, fp32, os.path.join(pqat_model.path, PQAT_FILE),
                  os.path.join(channel_pruned_model.path, CHANNEL_PRUNED_FILE), metrics.path)
    log_metrics(metrics, result)
    return section_values("prune", cfg)  # the section it ran with, for track
