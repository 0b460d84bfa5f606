"""convert: Keras models -> .tflite variants and model_card.json."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def convert(
    prepared: Input[Dataset],
    fp32_model: Input[Model],
    qat_model: Input[Model],
    mixed_model: Input[Model],
    pqat_model: Input[Model],
    channel_pruned_model: Input[Model],
    tflite: Output[Model],
    metrics: Output[Metrics],
    io_dtype: str,
    variants: list,
    per_channel: bool,
) -> dict:
    """A folder of <variant>.tflite files and their model card (edgeqat.steps.convert)."""
    import os

    from edgeqat.kfp_io import CHANNEL_PRUNED_FILE, FP32_FILE, MIXED_FILE, PQAT_FILE, QAT_FILE, log_metrics
    from edgeqat.kfp_params import section_config, section_values
    from edgeqat.steps.convert import convert as step

    cfg = section_config("convert", locals())
    fp32 = os.path.join(fp32_model.path, FP32_FILE)
    qat = os.path.join(qat_model.path, QAT_FILE)
    result = step(cfg, prepared.path, fp32, qat, tflite.path, metrics.path,
                  mixed_model=os.path.join(mixed_model.path, MIXED_FILE),
                  pqat_model=os.path.join(pqat_model.path, PQAT_FILE),
                  channel_pruned_model=os.path.join(channel_pruned_model.path, CHANNEL_PRUNED_FILE))
    log_metrics(metrics, result)
    return section_values("convert", cfg)  # the section it ran with, for track
