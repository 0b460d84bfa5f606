"""Training recipes shared by the qat, prune and cluster stages and the recommendation search:
QAT wrapping, magnitude pruning + pruning-preserving QAT, channel pruning + fine-tune + QAT,
weight clustering + cluster-preserving QAT. Each takes a config and a model path and returns
the trained Keras model and its metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgeqat.config import ClusterConfig, PruneConfig
from edgeqat.data.shards import count_records, load_meta, make_dataset
from edgeqat.io import log
from edgeqat.models.io import load_model
from edgeqat.models.training import accuracy, compile_classifier, fit


def quantize(model: Any, per_channel: bool = True) -> Any:
    """tfmot's default 8-bit QAT wrapping, with edgeqat.compression.annotate's fallbacks
    for layers tfmot has no config for (named in the log). ``per_channel`` False
    (``convert.per_channel``): BatchNorms folded, one weight scale per kernel
    (:mod:`edgeqat.compression.schemes`)."""
    from edgeqat.compression.annotate import quantize as annotate_quantize

    scheme = None
    if not per_channel:
        from edgeqat.compression.schemes import per_tensor_model, plain_scheme

        model, names = per_tensor_model(model)
        scheme = plain_scheme(names)
    wrapped, report = annotate_quantize(model, scheme=scheme)
    if report["as_depthwise"]:
        log(f"qat: {', '.join(report['as_depthwise'])}: per-channel affine preprocessing, quantized as a 1x1 "
            "depthwise convolution (same maths; tfmot has no config for it)")
    if report["output_only"]:
        log(f"qat: tfmot has no quantization config for {', '.join(report['output_only'])}: their maths stays float "
            "with fake-quantized outputs; the converter may keep them as float ops (validate names them)")
    return wrapped


def train_pqat(cfg: PruneConfig, fp32_model: str | Path, data: "PruneData",
               pruned_out: str | Path | None = None, per_channel: bool = True,
               trust_code: bool = False) -> tuple[Any, dict[str, Any], list[dict]]:
    """Magnitude pruning to ``cfg.target_sparsity`` (or 2:4), then pruning-preserving QAT.
    ``pruned_out``: where to save the stripped pruned FP32 model too (what PCQAT clusters);
    ``per_channel``: ``convert.per_channel`` (False: one weight scale per kernel);
    ``trust_code``: the run's ``train.trust_model_code``, for every model file read here."""
    from edgeqat.compression.pruning import keras_sparsity, magnitude_prune, prune_preserving_quantize
    from edgeqat.models.io import save_model

    fp32 = load_model(fp32_model, trust_code=trust_code)
    rows: list[dict] = []
    if cfg.target_sparsity > 0 or cfg.m_by_n:
        what = "2:4 sparsity" if cfg.m_by_n else f"{cfg.target_sparsity:.0%} sparsity"
        log(f"prune: magnitude pruning {fp32.name} to {what} over {cfg.epochs} epoch(s)")
        pruned, rows = magnitude_prune(
            fp32, data.train, data.val, target_sparsity=cfg.target_sparsity, epochs=cfg.epochs,
            steps_per_epoch=data.steps, learning_rate=cfg.learning_rate, m_by_n=(2, 4) if cfg.m_by_n else None,
            scope=cfg.sparsity_scope,
        )
    else:
        log("prune: target_sparsity 0: pruning-preserving QAT of the unpruned model")
        pruned = fp32
    sparsity = keras_sparsity(pruned)
    if pruned_out is not None:
        save_model(pruned, pruned_out)
    pqat = prune_preserving_quantize(pruned, per_channel)
    compile_classifier(pqat, cfg.qat_learning_rate)
    fit(pqat, data.train, data.val, cfg.pqat_epochs, 0, tag="pqat")
    metrics = {
        "sparsity_scope": cfg.sparsity_scope,
        "keras_sparsity": round(sparsity, 6),
        "keras_sparsity_without_depthwise": round(keras_sparsity(pruned, depthwise=False), 6),
        "keras_sparsity_after_pqat": round(keras_sparsity_of_quantized(pqat), 6),
        "val_accuracy": accuracy(pqat, data.val),
        "test_accuracy": accuracy(pqat, data.test),
    }
    return pqat, metrics, rows


def train_narrow(cfg: PruneConfig, fp32_model: str | Path, data: "PruneData",
                 trust_code: bool = False) -> tuple[Any, dict[str, Any]]:
    """Drop ``cfg.channel_fraction`` of the filters and fine-tune the narrower FP32 model."""
    from edgeqat.compression.channels import channel_prune
    from edgeqat.tf_compat import keras

    fp32 = load_model(fp32_model, trust_code=trust_code)
    narrow, report = channel_prune(fp32, cfg.channel_fraction)
    log(f"prune: channel pruning removed {cfg.channel_fraction:.0%} of the channels of {report['channel_groups']} "
        f"group(s) ({report['residual_groups']} spanning residual merges; {len(report['pruned_layers'])} convolutions): "
        f"{report['params_before']:,} -> {report['params_after']:,} parameters")
    # Cosine decay to zero: the narrow model is retrained more than tuned, and ending at a
    # low rate settles it (a constant rate left test accuracy swinging 2-3 points an epoch).
    lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, cfg.channel_epochs * data.steps)
    if cfg.channel_distillation > 0:
        from edgeqat.compression.distill import distiller

        log(f"prune: fine-tuning the narrower model with distillation from {fp32.name} "
            f"(teacher weight {cfg.channel_distillation})")
        trainer = distiller(narrow, fp32, cfg.channel_distillation, lr)
    else:
        trainer = narrow
        compile_classifier(trainer, lr)
    fit(trainer, data.train, data.val, cfg.channel_epochs, 0, tag="channel-prune")
    return narrow, report


def train_channel_pruned(cfg: PruneConfig, fp32_model: str | Path, data: "PruneData",
                         per_channel: bool = True, trust_code: bool = False) -> tuple[Any, dict[str, Any]]:
    """The narrower model of :func:`train_narrow`, then QAT (``per_channel``: ``convert.per_channel``)."""
    narrow, report = train_narrow(cfg, fp32_model, data, trust_code)
    narrow_acc = accuracy(narrow, data.test)
    cq = quantize(narrow, per_channel)
    compile_classifier(cq, cfg.qat_learning_rate)
    fit(cq, data.train, data.val, cfg.qat_epochs, 0, tag="channel-prune qat")
    metrics = {
        "params_before": report["params_before"],
        "params_after": report["params_after"],
        "params_ratio": report["params_after"] / report["params_before"],
        "layers_pruned": len(report["pruned_layers"]),
        "channel_groups": report["channel_groups"],
        "residual_groups": report["residual_groups"],
        "filters": report["pruned_layers"],
        "fp32_test_accuracy": narrow_acc,
        "val_accuracy": accuracy(cq, data.val),
        "test_accuracy": accuracy(cq, data.test),
    }
    return cq, metrics


def train_clustered_qat(cfg: ClusterConfig, source_model: str | Path, data: "PruneData",
                        preserve_sparsity: bool, teacher_model: str | Path | None = None,
                        per_channel_scales: bool = True, trust_code: bool = False) -> tuple[Any, dict[str, Any]]:
    """Cluster ``source_model``'s kernels to ``cfg.number_of_clusters`` while fine-tuning, then
    cluster-preserving QAT: CQAT, or PCQAT of a pruned model with ``preserve_sparsity``. Both
    fine-tunes distil from ``teacher_model`` (default: the source) with ``cfg.distillation``.
    ``per_channel_scales`` False (``convert.per_channel``): every kernel gets one weight scale.
    Returns the model in the default QAT wrapping (it saves and reloads) and its metrics."""
    from edgeqat.compression.clustering import (as_default_qat, cluster_preserving_quantize, cluster_wrap,
                                                distinct_values, strip)
    from edgeqat.compression.pruning import keras_sparsity

    from edgeqat.compression.schemes import per_tensor_layers
    from edgeqat.models.batchnorm import fold_batchnorm

    tag = "pcqat" if preserve_sparsity else "cqat"
    # Folded first: the converter would otherwise scale each channel's centroids apart.
    source, folded = fold_batchnorm(load_model(source_model, trust_code=trust_code))
    if folded:
        log(f"cluster: {tag}: folded {len(folded)} BatchNorm layer(s) into the layers before them")
    before = keras_sparsity(source)
    wrapped, report = cluster_wrap(source, cfg.number_of_clusters, cfg.centroid_init, per_channel=cfg.per_channel,
                                   preserve_sparsity=preserve_sparsity)
    how = f"{cfg.number_of_clusters} clusters{' per channel' if cfg.per_channel else ''} ({cfg.centroid_init})"
    log(f"cluster: {tag}: clustering {len(report['clustered'])} kernel(s) of {source.name} to {how}"
        + (f", keeping its {before:.1%} zeros" if preserve_sparsity else "") + f", {cfg.epochs} epoch(s)")
    by_reason: dict[str, list[str]] = {}
    for layer, why in report["skipped"].items():
        by_reason.setdefault(why, []).append(layer)
    for why, layers in by_reason.items():
        log(f"cluster: {tag}: left unclustered ({why}): {', '.join(layers)}")
    teacher = load_model(teacher_model or source_model, trust_code=trust_code) if cfg.distillation > 0 else None
    if teacher is not None:
        log(f"cluster: {tag}: fine-tuning with distillation from {teacher.name} (teacher weight {cfg.distillation})")
    fit(_trainer(wrapped, teacher, cfg.distillation, cfg.learning_rate), data.train, data.val, cfg.epochs, 0,
        tag=f"{tag} clustering")
    clustered = strip(wrapped)
    values = distinct_values(clustered)
    clustered_acc = accuracy(clustered, data.test)
    # One weight scale per clustered kernel keeps its centroids one int8 code each; clustered
    # per channel, tfmot's per-channel scales already do.
    by_tensor = frozenset() if cfg.per_channel else frozenset(report["clustered"])
    per_tensor = per_tensor_layers(clustered) & by_tensor if per_channel_scales else per_tensor_layers(clustered)
    model = cluster_preserving_quantize(clustered, preserve_sparsity, by_tensor, per_tensor)
    fit(_trainer(model, teacher, cfg.distillation, cfg.qat_learning_rate), data.train, data.val, cfg.qat_epochs, 0,
        tag=tag)
    model = as_default_qat(model, clustered, per_tensor)
    done = {n: values[n] for n in report["clustered"]}
    metrics = {
        "number_of_clusters": cfg.number_of_clusters,
        "per_channel": cfg.per_channel,
        "distillation": cfg.distillation,
        "batchnorm_folded": len(folded),
        "per_tensor_scaled_layers": len(per_tensor),
        "clustered_layers": len(report["clustered"]),
        "unclustered_layers": report["skipped"],
        # over the clustered kernels of the stripped FP32 model (before QAT)
        "max_values_per_tensor": max(v["tensor"] for v in done.values()),
        "max_values_per_channel": max(v["per_channel"] for v in done.values()),
        "keras_sparsity_before": round(before, 6),
        "keras_sparsity_clustered": round(keras_sparsity(clustered), 6),
        "keras_sparsity_after_qat": round(keras_sparsity_of_quantized(model), 6),
        "clustered_fp32_test_accuracy": clustered_acc,
        "val_accuracy": accuracy(model, data.val),
        "test_accuracy": accuracy(model, data.test),
    }
    return model, metrics


def _trainer(student: Any, teacher: Any, alpha: float, learning_rate: float) -> Any:
    """What ``fit`` trains: ``student`` itself, or a distiller around it when there is a teacher."""
    if teacher is None:
        compile_classifier(student, learning_rate)
        return student
    from edgeqat.compression.distill import distiller

    return distiller(student, teacher, alpha, learning_rate, key="cluster.distillation")


class PruneData:
    """The train/val/test datasets the pruning and clustering fine-tunes read (built once, shared)."""

    def __init__(self, prepared: str | Path, batch_size: int, seed: int) -> None:
        prepared = Path(prepared)
        norm = load_meta(prepared)["normalization"]["scheme"]
        self.train = make_dataset(prepared / "train", norm, batch_size, shuffle_buffer=2048, seed=seed)
        self.val = make_dataset(prepared / "val", norm, batch_size)
        self.test = make_dataset(prepared / "test", norm, batch_size)
        self.steps = math.ceil(count_records(prepared / "train") / batch_size)


def keras_sparsity_of_quantized(model: Any) -> float:
    """Zeros over the kernels inside a quantize-wrapped model (after PQAT training)."""
    import numpy as np

    zeros = total = 0
    for w in model.weights:
        if w.name.endswith("kernel:0") or w.name.endswith("depthwise_kernel:0"):
            a = w.numpy()
            zeros += int(np.count_nonzero(a == 0))
            total += a.size
    return zeros / total if total else 0.0
