"""register: the chosen .tflite as an MLflow model version (alias `challenger` when its gates pass)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    tflite: Input[Model],
    fp32_model: Input[Model],
    summary: Input[Artifact],
    recommended: Input[Model],
    recommendation: Input[Artifact],
    registered: Output[Artifact],
    metrics: Output[Metrics],
    model_name: str,
    variant: str,
    experiment: str,
    auto_promote: bool,
    promote_metric: str,
    min_accuracy: float,
    max_accuracy_drop: float,
    max_size_bytes: str,
    required_devices: str,
    deploy_dir: str,
    all_params: dict,
    mlflow_tracking_uri: str,
) -> dict:
    """edgeqat.steps.register on the convert/evaluate artifacts; ``all_params`` = what track logged."""
    import os

    from edgeqat.kfp_io import FP32_FILE, log_metrics
    from edgeqat.kfp_params import params_from_sections, section_config, section_values
    from edgeqat.steps.register import register as step
    from edgeqat.steps.register import register_recommended

    cfg = section_config("register", locals())
    params = params_from_sections({**all_params, "register": section_values("register", cfg)})
    result = step(cfg, params, tflite.path, os.path.join(fp32_model.path, FP32_FILE), summary.path, registered.path,
                  lock=None, uri=mlflow_tracking_uri or None)
    register_recommended(cfg, params, tflite.path, recommended.path,
                         os.path.join(recommendation.path, "recommendation.json"), uri=mlflow_tracking_uri or None)
    log_metrics(metrics, result)
    return section_values("register", cfg)
