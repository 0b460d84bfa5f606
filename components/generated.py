"""Kubeflow Pipelines components, one per stage and the params task: GENERATED from
src/edgeqat/workspace/stages.py by `edgeqat generate` (a test fails when this file is stale). Do not edit:
every stage's body hands its arguments to edgeqat.adapters.kfp.runner.run_component, which runs
the same step as DVC; the params task's to run_params, which validates them once."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, HTML, Input, Markdown, Metrics, Model, Output

from edgeqat.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def params(
    prepare__source: str,
    prepare__path: str,
    prepare__image_size: int,
    prepare__channels: int,
    prepare__normalize: str,
    prepare__val_fraction: float,
    prepare__test_fraction: float,
    prepare__test_split: str,
    prepare__calibration_size: int,
    prepare__shard_size: int,
    prepare__seed: int,
    prepare__follow_symlinks: bool,
    prepare__alpha_background: str,
    train__model: str,
    train__alpha: float,
    train__weights: str,
    train__from_model: str,
    train__trust_model_code: bool,
    train__epochs: int,
    train__batch_size: int,
    train__learning_rate: float,
    train__early_stopping_patience: int,
    train__dropout: float,
    train__shuffle_buffer: int,
    train__seed: int,
    qat__epochs: int,
    qat__learning_rate: float,
    qat__batch_size: int,
    qat__finetune_source: str,
    qat__finetune_path: str,
    qat__seed: int,
    qat__keep_float: list,
    qat__auto_keep_float: bool,
    qat__max_accuracy_drop: float,
    prune__target_sparsity: float,
    prune__sparsity_scope: str,
    prune__m_by_n: bool,
    prune__epochs: int,
    prune__pqat_epochs: int,
    prune__channel_fraction: float,
    prune__channel_epochs: int,
    prune__channel_distillation: float,
    prune__qat_epochs: int,
    prune__learning_rate: float,
    prune__qat_learning_rate: float,
    prune__batch_size: int,
    prune__seed: int,
    cluster__number_of_clusters: int,
    cluster__centroid_init: str,
    cluster__per_channel: bool,
    cluster__epochs: int,
    cluster__qat_epochs: int,
    cluster__distillation: float,
    cluster__learning_rate: float,
    cluster__qat_learning_rate: float,
    cluster__batch_size: int,
    cluster__seed: int,
    convert__io_dtype: str,
    convert__variants: list,
    convert__per_channel: bool,
    evaluate__num_threads: int,
    evaluate__latency_runs: int,
    evaluate__warmup_runs: int,
    evaluate__reference: str,
    evaluate__headline: str,
    validate__model: str,
    validate__variants: list,
    validate__devices: list,
    validate__required_devices: list,
    validate__profiles_dir: str,
    validate__max_accuracy_drop: float,
    validate__latency_runs: int,
    validate__emulate: bool,
    validate__emulate_samples: int,
    validate__gate_on_extrapolated: bool,
    validate__parity_samples: int,
    recommend__enabled: bool,
    recommend__devices: list,
    recommend__budget_accuracy_drop: float,
    recommend__max_minutes: float,
    recommend__sparsities: list,
    recommend__channel_fractions: list,
    recommend__latency_runs: int,
    track__experiment: str,
    track__log_models: bool,
    register__model_name: str,
    register__variant: str,
    register__experiment: str,
    register__auto_promote: bool,
    register__promote_metric: str,
    register__min_accuracy: float,
    register__chance_margin: float,
    register__max_accuracy_drop: float,
    register__max_size_bytes: str,
    register__required_devices: str,
    register__deploy_dir: str,
) -> str:
    """The pipeline's parameters as one params document, validated as a params.yaml is."""
    from edgeqat.adapters.kfp.runner import run_params

    return run_params(locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare(
    prepared: Output[Dataset],
    prepare_metrics: Output[Metrics],
    prepare_timings: Output[Artifact],
    prepare__source: str,
    prepare__path: str,
    prepare__image_size: int,
    prepare__channels: int,
    prepare__normalize: str,
    prepare__val_fraction: float,
    prepare__test_fraction: float,
    prepare__test_split: str,
    prepare__calibration_size: int,
    prepare__shard_size: int,
    prepare__seed: int,
    prepare__follow_symlinks: bool,
    prepare__alpha_background: str,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
    raw_data: Optional[Input[Dataset]] = None,
) -> None:
    """Raw data -> resized, stratified, sharded train/val/test/calib splits."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('prepare', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def preflight(
    prepared: Input[Dataset],
    preflight: Output[Artifact],
    preflight_metrics: Output[Metrics],
    preflight_timings: Output[Artifact],
    train__model: str,
    train__alpha: float,
    train__weights: str,
    train__from_model: str,
    train__trust_model_code: bool,
    train__epochs: int,
    train__batch_size: int,
    train__learning_rate: float,
    train__early_stopping_patience: int,
    train__dropout: float,
    train__shuffle_buffer: int,
    train__seed: int,
    validate__model: str,
    validate__variants: list,
    validate__devices: list,
    validate__required_devices: list,
    validate__profiles_dir: str,
    validate__max_accuracy_drop: float,
    validate__latency_runs: int,
    validate__emulate: bool,
    validate__emulate_samples: int,
    validate__gate_on_extrapolated: bool,
    validate__parity_samples: int,
    prune__channel_fraction: float,
    recommend__channel_fractions: list,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
    pretrained_model: Optional[Input[Model]] = None,
) -> None:
    """Before training: the model's untrained int8 graph against every required device's budgets."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('preflight', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    prepared: Input[Dataset],
    preflight_metrics: Input[Metrics],
    fp32_model: Output[Model],
    train_metrics: Output[Metrics],
    train_history: Output[Dataset],
    train_timings: Output[Artifact],
    train__model: str,
    train__alpha: float,
    train__weights: str,
    train__from_model: str,
    train__trust_model_code: bool,
    train__epochs: int,
    train__batch_size: int,
    train__learning_rate: float,
    train__early_stopping_patience: int,
    train__dropout: float,
    train__shuffle_buffer: int,
    train__seed: int,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
    pretrained_model: Optional[Input[Model]] = None,
) -> None:
    """FP32 baseline, or the user's pretrained model (train.from_model)."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('train', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def qat(
    prepared: Input[Dataset],
    fp32_model: Input[Model],
    qat_model: Output[Model],
    mixed_model: Output[Model],
    sensitivity: Output[Artifact],
    sensitivity_report: Output[Markdown],
    qat_metrics: Output[Metrics],
    qat_history: Output[Dataset],
    qat_timings: Output[Artifact],
    qat__epochs: int,
    qat__learning_rate: float,
    qat__batch_size: int,
    qat__finetune_source: str,
    qat__finetune_path: str,
    qat__seed: int,
    qat__keep_float: list,
    qat__auto_keep_float: bool,
    qat__max_accuracy_drop: float,
    convert__variants: list,
    convert__per_channel: bool,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """Quantization-aware fine-tuning of the FP32 model, plain and mixed precision."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('qat', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prune(
    prepared: Input[Dataset],
    fp32_model: Input[Model],
    pqat_model: Output[Model],
    pruned_model: Output[Model],
    channel_pruned_model: Output[Model],
    prune_metrics: Output[Metrics],
    prune_history: Output[Dataset],
    prune_timings: Output[Artifact],
    prune__target_sparsity: float,
    prune__sparsity_scope: str,
    prune__m_by_n: bool,
    prune__epochs: int,
    prune__pqat_epochs: int,
    prune__channel_fraction: float,
    prune__channel_epochs: int,
    prune__channel_distillation: float,
    prune__qat_epochs: int,
    prune__learning_rate: float,
    prune__qat_learning_rate: float,
    prune__batch_size: int,
    prune__seed: int,
    convert__variants: list,
    convert__per_channel: bool,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """Magnitude pruning + pruning-preserving QAT, and structured channel pruning + QAT."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('prune', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def cluster(
    prepared: Input[Dataset],
    fp32_model: Input[Model],
    pruned_model: Input[Model],
    cqat_model: Output[Model],
    pcqat_model: Output[Model],
    cluster_metrics: Output[Metrics],
    cluster_timings: Output[Artifact],
    cluster__number_of_clusters: int,
    cluster__centroid_init: str,
    cluster__per_channel: bool,
    cluster__epochs: int,
    cluster__qat_epochs: int,
    cluster__distillation: float,
    cluster__learning_rate: float,
    cluster__qat_learning_rate: float,
    cluster__batch_size: int,
    cluster__seed: int,
    convert__variants: list,
    convert__per_channel: bool,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """Weight clustering + cluster-preserving QAT of the FP32 model (CQAT) and of the pruned one (PCQAT)."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('cluster', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def convert(
    prepared: Input[Dataset],
    fp32_model: Input[Model],
    qat_model: Input[Model],
    mixed_model: Input[Model],
    pqat_model: Input[Model],
    cqat_model: Input[Model],
    pcqat_model: Input[Model],
    channel_pruned_model: Input[Model],
    tflite: Output[Model],
    convert_metrics: Output[Metrics],
    convert_timings: Output[Artifact],
    convert__io_dtype: str,
    convert__variants: list,
    convert__per_channel: bool,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """Keras models -> .tflite variants and model_card.json."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('convert', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    prepared: Input[Dataset],
    tflite: Input[Model],
    fp32_model: Input[Model],
    evaluation: Output[Artifact],
    evaluation_report: Output[Markdown],
    confusion: Output[Dataset],
    pareto: Output[Artifact],
    evaluate_metrics: Output[Metrics],
    evaluate_timings: Output[Artifact],
    host_latency: Output[Artifact],
    headline_confusion: Output[ClassificationMetrics],
    evaluate__num_threads: int,
    evaluate__latency_runs: int,
    evaluate__warmup_runs: int,
    evaluate__reference: str,
    evaluate__headline: str,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """Accuracy and size of every .tflite through LiteRT (host latency in the stage's timings)."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('evaluate', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate(
    prepared: Input[Dataset],
    tflite: Input[Model],
    fp32_model: Input[Model],
    evaluation: Input[Artifact],
    summary: Output[Artifact],
    summary_report: Output[Markdown],
    devices_report: Output[Artifact],
    validate_metrics: Output[Metrics],
    validate_timings: Output[Artifact],
    validate__model: str,
    validate__variants: list,
    validate__devices: list,
    validate__required_devices: list,
    validate__profiles_dir: str,
    validate__max_accuracy_drop: float,
    validate__latency_runs: int,
    validate__emulate: bool,
    validate__emulate_samples: int,
    validate__gate_on_extrapolated: bool,
    validate__parity_samples: int,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> bool:
    """The registered variant on every device profile: runs? fits? accurate? fast enough?"""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('validate', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def recommend(
    prepared: Input[Dataset],
    tflite: Input[Model],
    fp32_model: Input[Model],
    qat_model: Input[Model],
    summary: Input[Artifact],
    recommended: Output[Model],
    recommendation: Output[Artifact],
    recommend_metrics: Output[Metrics],
    recommend_timings: Output[Artifact],
    recommend__enabled: bool,
    recommend__devices: list,
    recommend__budget_accuracy_drop: float,
    recommend__max_minutes: float,
    recommend__sparsities: list,
    recommend__channel_fractions: list,
    recommend__latency_runs: int,
    prune__target_sparsity: float,
    prune__sparsity_scope: str,
    prune__m_by_n: bool,
    prune__epochs: int,
    prune__pqat_epochs: int,
    prune__channel_fraction: float,
    prune__channel_epochs: int,
    prune__channel_distillation: float,
    prune__qat_epochs: int,
    prune__learning_rate: float,
    prune__qat_learning_rate: float,
    prune__batch_size: int,
    prune__seed: int,
    validate__model: str,
    validate__variants: list,
    validate__devices: list,
    validate__required_devices: list,
    validate__profiles_dir: str,
    validate__max_accuracy_drop: float,
    validate__latency_runs: int,
    validate__emulate: bool,
    validate__emulate_samples: int,
    validate__gate_on_extrapolated: bool,
    validate__parity_samples: int,
    convert__per_channel: bool,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """recommend.enabled: the best model per device of recommend.devices (else a one-line report)."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('recommend', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def report(
    summary: Input[Artifact],
    devices_report: Input[Artifact],
    train_history: Input[Dataset],
    qat_history: Input[Dataset],
    confusion: Input[Dataset],
    pareto: Input[Artifact],
    recommendation: Input[Artifact],
    host_latency: Input[Artifact],
    report_html: Output[HTML],
    figures: Output[Artifact],
    headline: Output[Metrics],
    report_timings: Output[Artifact],
    evaluate__num_threads: int,
    evaluate__latency_runs: int,
    evaluate__warmup_runs: int,
    evaluate__reference: str,
    evaluate__headline: str,
    validate__model: str,
    validate__variants: list,
    validate__devices: list,
    validate__required_devices: list,
    validate__profiles_dir: str,
    validate__max_accuracy_drop: float,
    validate__latency_runs: int,
    validate__emulate: bool,
    validate__emulate_samples: int,
    validate__gate_on_extrapolated: bool,
    validate__parity_samples: int,
    register__model_name: str,
    register__variant: str,
    register__experiment: str,
    register__auto_promote: bool,
    register__promote_metric: str,
    register__min_accuracy: float,
    register__chance_margin: float,
    register__max_accuracy_drop: float,
    register__max_size_bytes: str,
    register__required_devices: str,
    register__deploy_dir: str,
    train__trust_model_code: bool,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """One self-contained page (reports/report.html), its figures, and the headline metrics."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('report', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def track(
    prepare_metrics: Input[Metrics],
    preflight_metrics: Input[Metrics],
    train_metrics: Input[Metrics],
    qat_metrics: Input[Metrics],
    prune_metrics: Input[Metrics],
    cluster_metrics: Input[Metrics],
    convert_metrics: Input[Metrics],
    evaluate_metrics: Input[Metrics],
    validate_metrics: Input[Metrics],
    recommend_metrics: Input[Metrics],
    prepare_timings: Input[Artifact],
    preflight_timings: Input[Artifact],
    train_timings: Input[Artifact],
    qat_timings: Input[Artifact],
    prune_timings: Input[Artifact],
    cluster_timings: Input[Artifact],
    convert_timings: Input[Artifact],
    evaluate_timings: Input[Artifact],
    validate_timings: Input[Artifact],
    recommend_timings: Input[Artifact],
    report_timings: Input[Artifact],
    train_history: Input[Dataset],
    qat_history: Input[Dataset],
    prune_history: Input[Dataset],
    confusion: Input[Dataset],
    prepared: Input[Dataset],
    fp32_model: Input[Model],
    tflite: Input[Model],
    recommended: Input[Model],
    recommendation: Input[Artifact],
    evaluation: Input[Artifact],
    summary: Input[Artifact],
    summary_report: Input[Markdown],
    devices_report: Input[Artifact],
    sensitivity: Input[Artifact],
    sensitivity_report: Input[Markdown],
    pareto: Input[Artifact],
    report_html: Input[HTML],
    figures: Input[Artifact],
    headline: Input[Metrics],
    tracked: Output[Artifact],
    mlflow_run: Output[Artifact],
    params_json: str,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """Log the whole execution to MLflow: one run with params, metrics, curves, data, models, reports."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('track', locals())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    tracked: Input[Artifact],
    mlflow_run: Input[Artifact],
    tflite: Input[Model],
    summary: Input[Artifact],
    recommended: Input[Model],
    recommendation: Input[Artifact],
    registered: Output[Artifact],
    params_json: str,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_tags: dict,
    kfp_run_id: str,
    kfp_run_name: str,
) -> None:
    """The run's model as a new MLflow model version (alias challenger); per-device models too."""
    from edgeqat.adapters.kfp.runner import run_component

    return run_component('register', locals())


COMPONENTS = {name: globals()[name] for name in ('params', 'prepare', 'preflight', 'train', 'qat', 'prune', 'cluster', 'convert', 'evaluate', 'validate', 'recommend', 'report', 'track', 'register',)}
