"""prune: two compressed quantization-aware models from the FP32 model.

1. Magnitude pruning to ``prune.target_sparsity`` (polynomial schedule; ``m_by_n``: 2:4
   sparsity), strip, then pruning-preserving QAT (``Default8BitPrunePreserveQuantizeScheme``)
   so the zeros survive int8 -> ``pqat_out`` (the ``pqat_int8`` variant). Pruning starts
   from FP32 because tfmot cannot prune a quantize-wrapped model. The stripped pruned FP32
   model goes to ``pruned_out`` (the cluster stage clusters it for PCQAT).
2. Structured channel pruning: drop ``prune.channel_fraction`` of the least important
   channels of every prunable channel group (residual streams included), rebuild a
   narrower model, fine-tune it (distilling from the FP32 model), then QAT ->
   ``channel_pruned_out`` (the ``channel_pruned_qat_int8`` variant).

The QAT outputs are HDF5 (quantize-wrapped models do not reload from .keras files).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeqat.compression.recipes import PruneData, train_channel_pruned, train_pqat
from edgeqat.config import PruneConfig
from edgeqat.io import log, write_json, write_text
from edgeqat.models.io import save_model
from edgeqat.models.training import HISTORY_COLUMNS, history_csv


def prune(
    cfg: PruneConfig,
    prepared: str | Path,
    fp32_model: str | Path,
    pqat_out: str | Path,
    channel_pruned_out: str | Path,
    metrics_path: str | Path | None = None,
    history_path: str | Path | None = None,
    pruned_out: str | Path | None = None,
    convert_per_channel: bool = True,
) -> dict[str, Any]:
    """``convert_per_channel`` (``convert.per_channel``) False: both QAT models get one weight
    scale per kernel."""
    from edgeqat.tf_compat import set_determinism

    t0 = time.monotonic()
    set_determinism(cfg.seed)
    data = PruneData(prepared, cfg.batch_size, cfg.seed)

    # 1. magnitude pruning -> pruning-preserving QAT
    pqat, pqat_metrics, rows = train_pqat(cfg, fp32_model, data, pruned_out=pruned_out,
                                         per_channel=convert_per_channel)
    save_model(pqat, pqat_out)
    log(f"prune: PQAT model at {pqat_metrics['keras_sparsity']:.1%} sparsity, test accuracy "
        f"{pqat_metrics['test_accuracy']:.4f} -> {pqat_out}")

    # 2. structured channel pruning -> fine-tune -> QAT
    cq, channel_metrics = train_channel_pruned(cfg, fp32_model, data, convert_per_channel)
    save_model(cq, channel_pruned_out)
    log(f"prune: channel-pruned QAT test accuracy {channel_metrics['test_accuracy']:.4f} -> {channel_pruned_out}")

    metrics = {"pqat": pqat_metrics, "channel_pruned": channel_metrics}
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    if history_path is not None:  # per pruning epoch, with the sparsity the schedule reached
        write_text(history_path, history_csv(rows, HISTORY_COLUMNS + ("sparsity",)))
    return {**metrics, "timings": {"training_seconds": round(time.monotonic() - t0, 2)}}
