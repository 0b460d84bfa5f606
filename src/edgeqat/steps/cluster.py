"""cluster: two clustered quantization-aware models.

1. Weight clustering of the FP32 model (``cluster.number_of_clusters`` centroids per Conv2D /
   Dense kernel, ``cluster.centroid_init``, ``cluster.per_channel``), then cluster-preserving
   QAT -> ``cqat_out`` (the ``cqat_int8`` variant).
2. Sparsity-preserving clustering of the prune stage's magnitude-pruned FP32 model, then
   sparsity- and cluster-preserving QAT -> ``pcqat_out`` (``pcqat_int8``): its zeros stay zero
   and are one of the centroids.

Both fine-tunes distil from the FP32 model (``cluster.distillation``), and BatchNorms are
folded before clustering so that the kernels clustered are the kernels the device stores
(:mod:`edgeqat.compression.schemes`).

A stage of its own rather than part of prune: a change to the cluster section re-runs only
this stage, not the pruning and channel-pruning fine-tunes, and PCQAT starts from the pruned
model prune already made. Both outputs are HDF5 in tfmot's default QAT wrapping
(:func:`edgeqat.compression.clustering.as_default_qat`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeqat.compression.recipes import PruneData, train_clustered_qat
from edgeqat.config import ClusterConfig
from edgeqat.io import log
from edgeqat.models.absent import mark, not_built, skip_line
from edgeqat.models.io import save_model


def cluster(
    cfg: ClusterConfig,
    prepared: str | Path,
    fp32_model: str | Path,
    pruned_model: str | Path,
    cqat_out: str | Path,
    pcqat_out: str | Path,
    *,
    variants: list[str] | None = None,
    per_channel: bool = True,
    trust_model_code: bool = False,
) -> dict[str, Any]:
    """``variants`` (convert.variants; None: all): only the requested of cqat_int8 / pcqat_int8 are
    made; the other gets a marker in its file's place (:mod:`edgeqat.models.absent`).
    ``per_channel`` (``convert.per_channel``) False: every kernel of both models gets one weight
    scale (its clusters stay as ``cluster.per_channel`` says). ``trust_model_code``: the run's
    trust decision for the model files read."""
    from edgeqat.tf_compat import set_determinism

    t0 = time.monotonic()
    skipped = not_built("cluster", variants, fp32_model)
    metrics: dict[str, Any] = {}
    if skipped:
        log(skip_line("cluster", skipped))
        metrics["not_built"] = {v: reason for v, (_, reason) in skipped.items()}
    todo = []
    for name, source, dest, preserve in (("cqat", fp32_model, cqat_out, False), ("pcqat", pruned_model, pcqat_out, True)):
        if f"{name}_int8" in skipped:
            mark(dest, [f"{name}_int8"], skipped)
        else:
            todo.append((name, source, dest, preserve))
    data = None
    if todo:  # else TensorFlow is not even imported
        set_determinism(cfg.seed)
        data = PruneData(prepared, cfg.batch_size, cfg.seed)
    for name, source, dest, preserve in todo:
        model, metrics[name] = train_clustered_qat(cfg, source, data, preserve_sparsity=preserve, teacher_model=fp32_model,
                                                     per_channel_scales=per_channel, trust_code=trust_model_code)
        save_model(model, dest)
        m = metrics[name]
        log(f"cluster: {name.upper()}: at most {m['max_values_per_tensor']} distinct weights per kernel "
            f"({m['max_values_per_channel']} per channel), sparsity {m['keras_sparsity_after_qat']:.1%}, "
            f"test accuracy {m['test_accuracy']:.4f} -> {dest}")
    return {**metrics, "timings": {"training_seconds": round(time.monotonic() - t0, 2)}}
