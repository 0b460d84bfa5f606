"""Magnitude pruning (polynomial schedule, optionally 2:4) and pruning-preserving QAT.

tfmot cannot prune a quantize-wrapped model (``prune_low_magnitude`` rejects
QuantizeWrapper layers), so pruning starts from the FP32 model: prune -> strip ->
``quantize_apply`` with ``Default8BitPrunePreserveQuantizeScheme``, whose weight
quantizers keep the zero mask fixed so the sparsity survives into int8.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from edgeqat.errors import ModelError


def _with_sparsity(model: Any, logs: dict) -> None:
    logs["sparsity"] = keras_sparsity(model)  # the schedule's progress, into the history (prune_history.csv)


def magnitude_prune(
    model: Any,
    train_ds: Any,
    val_ds: Any,
    *,
    target_sparsity: float,
    epochs: int,
    steps_per_epoch: int,
    learning_rate: float,
    m_by_n: tuple[int, int] | None = None,
    scope: str = "model",
) -> tuple[Any, list[dict]]:
    """Prune ``model`` to ``target_sparsity`` while fine-tuning; returns (stripped model, history rows).

    The polynomial schedule ramps sparsity from 0 to the target over the first ~2/3 of
    the steps and holds it for the rest, so the last epoch recovers accuracy at the final
    sparsity. ``scope`` "model": the target is the fraction of all kernel weights (see
    :func:`layer_target`); "layer": of each layer tfmot prunes.
    """
    from edgeqat.models.training import compile_classifier, progress_callback
    from edgeqat.tf_compat import keras, tfmot

    sp = tfmot.sparsity.keras
    total = max(1, epochs * steps_per_epoch)
    end = max(1, math.ceil(total * 2 / 3)) if epochs > 1 else total

    def wrap(sparsity: float) -> Any:
        schedule = sp.PolynomialDecay(0.0, float(sparsity), begin_step=0, end_step=end,
                                      frequency=max(1, min(100, end // 10 or 1)))
        kwargs: dict[str, Any] = {"pruning_schedule": schedule}
        if m_by_n is not None:
            kwargs["sparsity_m_by_n"] = m_by_n
        try:
            return sp.prune_low_magnitude(model, **kwargs)
        except ValueError:
            pass  # a layer tfmot's prune registry lacks (Rescaling, Normalization, ...)
        skipped: list[str] = []

        def per_layer(layer: Any) -> Any:
            try:
                return sp.prune_low_magnitude(layer, **kwargs)
            except ValueError:  # kept dense, as it is (its weights are shared, as tfmot's own wrappers do)
                skipped.append(layer.name)
                return layer

        try:
            wrapped = keras.models.clone_model(model, clone_function=per_layer)
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"tfmot cannot prune model {model.name!r}: {err}") from None
        if skipped and sparsity == target_sparsity:
            print(f"[edgeqat] prune: tfmot cannot prune {', '.join(skipped)}: kept dense", file=sys.stderr, flush=True)
        return wrapped

    pruned = wrap(target_sparsity)
    if scope == "model" and m_by_n is None and target_sparsity > 0:
        per_layer = layer_target(target_sparsity, kernel_size(model), prunable_size(pruned))
        if per_layer != target_sparsity:
            print(f"[edgeqat] prune: {target_sparsity:.1%} of all kernel weights = {per_layer:.1%} of the "
                  "weights of the layers tfmot prunes", file=sys.stderr, flush=True)
            pruned = wrap(per_layer)
    compile_classifier(pruned, learning_rate)
    bars = progress_callback(keras, "prune", epochs, on_epoch_end=_with_sparsity)
    try:
        hist = pruned.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0,
                          callbacks=[sp.UpdatePruningStep(), bars])
    finally:
        bars.close()
    h = hist.history
    rows = [{"epoch": e + 1, **{k: float(v[e]) for k, v in h.items()}} for e in range(len(h["loss"]))]
    return sp.strip_pruning(pruned), rows


def kernel_size(model: Any) -> int:
    """Number of kernel weights (conv, depthwise, dense), the denominator of the sparsity."""
    return sum(int(np.prod(w.shape)) for w in model.weights if "kernel" in w.name)


def prunable_size(pruned: Any) -> int:
    """Number of weights tfmot's wrappers in ``pruned`` mask (it leaves depthwise kernels alone)."""
    return sum(int(np.prod(w.shape)) for l in pruned.layers for w, _, _ in getattr(l, "pruning_vars", []))


def layer_target(target: float, total: int, prunable: int) -> float:
    """The per-layer sparsity that makes ``target`` of all ``total`` kernel weights zero when
    only ``prunable`` of them can be pruned; refused when that is not possible."""
    if prunable <= 0:
        raise ModelError("tfmot finds no prunable weights in this model (no Conv2D or Dense kernel)")
    per_layer = target * total / prunable
    if per_layer >= 1:
        raise ModelError(
            f"prune.target_sparsity {target} of all kernel weights needs {per_layer:.1%} of the prunable "
            f"ones ({prunable:,} of {total:,}; tfmot cannot prune depthwise kernels): lower "
            "prune.target_sparsity or set prune.sparsity_scope: layer"
        )
    return per_layer


def keras_sparsity(model: Any, *, depthwise: bool = True) -> float:
    """Fraction of zeros over the kernels of a float (stripped) Keras model (``depthwise``
    False: over the conv and dense kernels only, the ones tfmot prunes)."""
    zeros = total = 0
    for w in model.weights:
        if "kernel" in w.name and (depthwise or "depthwise" not in w.name):
            a = w.numpy()
            zeros += int(np.count_nonzero(a == 0))
            total += a.size
    return zeros / total if total else 0.0


def prune_preserving_quantize(model: Any, per_channel: bool = True) -> Any:
    """Wrap a stripped, pruned FP32 model for QAT that keeps its zeros at zero (``per_channel``
    False: BatchNorms folded, one weight scale per kernel; folding keeps zeros zero)."""
    from edgeqat.compression.annotate import quantize

    if per_channel:
        from edgeqat.tf_compat import tfmot

        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        from edgeqat.compression.schemes import per_tensor_model, prune_preserving_scheme

        model, names = per_tensor_model(model)
        scheme = prune_preserving_scheme(names)
    return quantize(model, scheme=scheme, what="apply pruning-preserving QAT to")[0]
