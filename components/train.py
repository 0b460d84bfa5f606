"""train: FP32 baseline, or a user's pretrained model (train.from_model or an imported Model)."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    prepared: Input[Dataset],
    fp32_model: Output[Model],
    history: Output[Dataset],
    metrics: Output[Metrics],
    model: str,
    alpha: float,
    weights: str,
    from_model: str,
    trust_model_code: bool,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    early_stopping_patience: int,
    dropout: float,
    shuffle_buffer: int,
    seed: int,
    pretrained_model: Optional[Input[Model]] = None,
) -> dict:
    """FP32 model (edgeqat.steps.train); the Model artifact is a folder holding fp32.keras."""
    import os

    from edgeqat.kfp_io import FP32_FILE, log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.train import train as step

    overrides = {"from_model": pretrained_model.path} if pretrained_model is not None else {}
    cfg = section_config("train", locals(), **overrides)
    out = os.path.join(fp32_model.path, FP32_FILE)
    log_metrics(metrics, step(cfg, prepared.path, out, metrics.path, history.path))
    return section_values("train", cfg)  # the section it ran with, for track
