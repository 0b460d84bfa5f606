"""track: one MLflow run for the whole pipeline execution, tagged with the KFP run id."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def track(
    prepare_metrics: Input[Metrics],
    train_metrics: Input[Metrics],
    qat_metrics: Input[Metrics],
    prune_metrics: Input[Metrics],
    convert_metrics: Input[Metrics],
    evaluate_metrics: Input[Metrics],
    validate_metrics: Input[Metrics],
    devices_report: Input[Artifact],
    recommend_metrics: Input[Metrics],
    recommendation: Input[Artifact],
    train_history: Input[Dataset],
    qat_history: Input[Dataset],
    confusion: Input[Dataset],
    fp32_model: Input[Model],
    qat_model: Input[Model],
    mixed_model: Input[Model],
    pqat_model: Input[Model],
    channel_pruned_model: Input[Model],
    tflite: Input[Model],
    summary: Input[Artifact],
    report: Input[Markdown],
    sensitivity: Input[Artifact],
    sensitivity_report: Input[Markdown],
    pareto: Input[Artifact],
    run_info: Output[Artifact],
    metrics: Output[Metrics],
    experiment: str,
    log_models: bool,
    prepare_config: dict,
    train_config: dict,
    qat_config: dict,
    prune_config: dict,
    convert_config: dict,
    evaluate_config: dict,
    validate_config: Input[Artifact],
    recommend_config: dict,
    mlflow_tracking_uri: str,
    kfp_run_id: str,
    kfp_run_name: str,
    run_tags: dict,
) -> dict:
    """Lays the artifacts out as the DVC path does and calls edgeqat.steps.track on them."""
    import os
    import tempfile

    from edgeqat.kfp_io import (CHANNEL_PRUNED_FILE, FP32_FILE, MIXED_FILE, PQAT_FILE, QAT_FILE, assemble_workspace,
                                log_metrics)
    from edgeqat.io import read_json
    from edgeqat.kfp_params import params_from_sections, section_config, section_values, sections_values
    from edgeqat.steps.track import track as step

    cfg = section_config("track", locals())
    params = params_from_sections({
        "prepare": prepare_config, "train": train_config, "qat": qat_config, "prune": prune_config,
        "convert": convert_config, "evaluate": evaluate_config, "validate": read_json(validate_config.path),
        "recommend": recommend_config, "track": section_values("track", cfg),
    })
    with tempfile.TemporaryDirectory(prefix="edgeqat-track-") as tmp:
        ws = assemble_workspace(tmp, {
            "metrics/prepare.json": prepare_metrics.path,
            "metrics/train.json": train_metrics.path,
            "metrics/qat.json": qat_metrics.path,
            "metrics/prune.json": prune_metrics.path,
            "metrics/convert.json": convert_metrics.path,
            "metrics/evaluate.json": evaluate_metrics.path,
            "metrics/validate.json": validate_metrics.path,
            "reports/devices.json": devices_report.path,
            "metrics/recommend.json": recommend_metrics.path,
            "reports/recommendation": recommendation.path,
            "plots/train_history.csv": train_history.path,
            "plots/qat_history.csv": qat_history.path,
            "plots/confusion.csv": confusion.path,
            "models/fp32.keras": os.path.join(fp32_model.path, FP32_FILE),
            "models/qat.h5": os.path.join(qat_model.path, QAT_FILE),
            "models/mixed.h5": os.path.join(mixed_model.path, MIXED_FILE),
            "models/pqat.h5": os.path.join(pqat_model.path, PQAT_FILE),
            "models/channel_pruned_qat.h5": os.path.join(channel_pruned_model.path, CHANNEL_PRUNED_FILE),
            "models/tflite": tflite.path,
            "reports/summary.json": summary.path,
            "reports/summary.md": report.path,
            "reports/sensitivity.json": sensitivity.path,
            "reports/sensitivity.md": sensitivity_report.path,
            "reports/pareto.png": pareto.path,
        })
        tags = {"orchestrator": "kubeflow", "kfp_run_id": kfp_run_id, "kfp_run_name": kfp_run_name, **{str(k): str(v) for k, v in run_tags.items()}}
        artifacts = {"models": ws / "models", "reports": ws / "reports", "plots": ws / "plots"}
        result = step(cfg, params, ws / "metrics", ws / "plots", artifacts, run_info.path,
                      uri=mlflow_tracking_uri or None, extra_tags=tags)
    log_metrics(metrics, result)
    return sections_values(params)  # every section, for register
