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
from edgeqat.io import log, write_text
from edgeqat.models.absent import mark, not_built, skip_line
from edgeqat.models.io import save_model
from edgeqat.models.training import HISTORY_COLUMNS, history_csv


def prune(
    cfg: PruneConfig,
    prepared: str | Path,
    fp32_model: str | Path,
    pqat_out: str | Path,
    channel_pruned_out: str | Path,
    history_path: str | Path | None = None,
    pruned_out: str | Path | None = None,
    *,
    variants: list[str] | None = None,
    per_channel: bool = True,
    trust_model_code: bool = False,
) -> dict[str, Any]:
    """``variants`` (convert.variants; None: all): part 1 runs for pqat_int8 or pcqat_int8 (PCQAT
    clusters the pruned model), part 2 for channel_pruned_qat_int8; a model not made gets a
    marker in its file's place (:mod:`edgeqat.models.absent`). ``per_channel``
    (``convert.per_channel``) False: both QAT models get one weight scale per kernel.
    ``trust_model_code``: the run's trust decision for the model files read."""
    from edgeqat.tf_compat import set_determinism

    t0 = time.monotonic()
    skipped = not_built("prune", variants, fp32_model)
    magnitude = not {"pqat_int8", "pcqat_int8"} <= set(skipped)
    if magnitude:  # the pruned model PCQAT needs comes with the PQAT one
        skipped.pop("pqat_int8", None)
    if skipped:
        log(skip_line("prune", skipped))
    metrics: dict[str, Any] = {}
    rows: list[dict] = []
    channel = "channel_pruned_qat_int8" not in skipped
    data = None
    if magnitude or channel:  # else TensorFlow is not even imported
        set_determinism(cfg.seed)
        data = PruneData(prepared, cfg.batch_size, cfg.seed)

    # 1. magnitude pruning -> pruning-preserving QAT
    if magnitude:
        pqat, metrics["pqat"], rows = train_pqat(cfg, fp32_model, data, pruned_out=pruned_out,
                                                 per_channel=per_channel, trust_code=trust_model_code)
        save_model(pqat, pqat_out)
        log(f"prune: PQAT model at {metrics['pqat']['keras_sparsity']:.1%} sparsity, test accuracy "
            f"{metrics['pqat']['test_accuracy']:.4f} -> {pqat_out}")
    else:
        mark(pqat_out, ["pqat_int8"], skipped)
        mark(pruned_out, ["pcqat_int8"], skipped)

    # 2. structured channel pruning -> fine-tune -> QAT
    if channel:
        cq, metrics["channel_pruned"] = train_channel_pruned(cfg, fp32_model, data, per_channel, trust_model_code)
        save_model(cq, channel_pruned_out)
        log(f"prune: channel-pruned QAT test accuracy {metrics['channel_pruned']['test_accuracy']:.4f} "
            f"-> {channel_pruned_out}")
    else:
        mark(channel_pruned_out, ["channel_pruned_qat_int8"], skipped)
    if skipped:
        metrics["not_built"] = {v: reason for v, (_, reason) in skipped.items()}
    if history_path is not None:  # per pruning epoch, with the sparsity the schedule reached
        write_text(history_path, history_csv(rows, HISTORY_COLUMNS + ("sparsity",)))
    return {**metrics, "timings": {"training_seconds": round(time.monotonic() - t0, 2)}}
