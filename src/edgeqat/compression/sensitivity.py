"""Per-layer quantization sensitivity, measured in Keras on the QAT model.

TFLite's QuantizationDebugger refuses QAT models, so each unit (a weighted layer plus its
BN/activation followers, see :mod:`edgeqat.compression.mixed`) is measured *in isolation*:
the QAT model's fake-quant wrappers of that unit are fed the FP32 model's float input to
the unit, and their output is compared with the FP32 unit's output on the same images.
Errors upstream therefore do not accumulate; what is left is the unit's own weight and
output-activation quantization (plus the small drift of QAT fine-tuning at a low LR).

``relative_error`` is the mean over output channels of RMS(error) / RMS(float signal):
a per-tensor int8 range stretched by one huge channel crushes the small ones, which a
whole-tensor ratio would hide. ``sqnr_db`` is the whole-tensor signal-to-noise ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeqat.compression.mixed import units
from edgeqat.models.graph import inbound_layers


def layer_sensitivity(fp32: Any, qat_model: Any, x: np.ndarray) -> list[dict[str, Any]]:
    """One row per unit the QAT model quantizes, most sensitive first."""
    from edgeqat.tf_compat import keras

    us = units(fp32)
    wrapped = {l.name for l in qat_model.layers}
    rows: list[dict[str, Any]] = []
    needed: dict[str, Any] = {}
    for name, chain in us.items():
        ins = inbound_layers(fp32.get_layer(name))
        if len(ins) != 1 or not all(f"quant_{n}" in wrapped for n in chain):
            continue
        needed[ins[0].name] = ins[0].output
        needed[chain[-1]] = fp32.get_layer(chain[-1]).output
    if not needed:
        return rows
    keys = list(needed)
    probe = keras.Model(fp32.inputs, [needed[k] for k in keys])
    acts = dict(zip(keys, [np.asarray(a) for a in probe(x, training=False)]))
    for name, chain in us.items():
        ins = inbound_layers(fp32.get_layer(name))
        if len(ins) != 1 or chain[-1] not in acts or ins[0].name not in acts:
            continue
        y = acts[ins[0].name]
        for n in chain:
            y = qat_model.get_layer(f"quant_{n}")(y, training=False)
        q, f = np.asarray(y, dtype=np.float64), acts[chain[-1]].astype(np.float64)
        err = (q - f).reshape(-1, f.shape[-1])
        ref = f.reshape(-1, f.shape[-1])
        rms_ref = np.sqrt(np.mean(ref**2, axis=0))
        rms_err = np.sqrt(np.mean(err**2, axis=0))
        floor = max(float(rms_ref.max()) * 1e-6, 1e-12)
        rel = float(np.mean(rms_err / np.maximum(rms_ref, floor)))
        noise = float(np.mean(err**2))
        sqnr = 10 * np.log10(float(np.mean(ref**2)) / noise) if noise > 0 else float("inf")
        rows.append({"layer": name, "unit": chain, "type": type(fp32.get_layer(name)).__name__,
                     "relative_error": rel, "sqnr_db": sqnr})
    rows.sort(key=lambda r: -r["relative_error"])
    return rows


def sensitivity_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Per-layer quantization sensitivity",
        "",
        "Method: Keras, QAT fake-quant vs FP32 float activations, each unit fed the FP32 input "
        "(isolated, not accumulated); most sensitive first.",
        "",
        "| layer | type | relative error | SQNR dB |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['type']} | {r['relative_error']:.4f} | {r['sqnr_db']:.1f} |")
    return "\n".join(lines) + "\n"
