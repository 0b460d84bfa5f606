"""prepare: raw source (built in, a local path, or an imported Dataset) -> prepared splits."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare(
    prepared: Output[Dataset],
    metrics: Output[Metrics],
    source: str,
    path: str,
    image_size: int,
    channels: int,
    normalize: str,
    val_fraction: float,
    test_fraction: float,
    test_split: str,
    calibration_size: int,
    shard_size: int,
    seed: int,
    follow_symlinks: bool,
    raw_data: Optional[Input[Dataset]] = None,
) -> dict:
    """Resized, stratified, sharded train/val/test/calib splits (edgeqat.steps.prepare)."""
    from edgeqat.kfp_io import log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.prepare import prepare as step

    overrides = {"path": raw_data.path} if raw_data is not None else {}
    cfg = section_config("prepare", locals(), **overrides)
    log_metrics(metrics, step(cfg, prepared.path, metrics.path))
    return section_values("prepare", cfg)  # the section it ran with, for track
