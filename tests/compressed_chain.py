"""A tiny model compressed every way the pipeline can (the `comp` fixture of tests/conftest.py).

Shared by the compression tests and the recommendation tests, built once per session: the
conversions dominate its time.
"""

from __future__ import annotations

import json

from edgeqat.config import ClusterConfig, ConvertConfig, EvaluateConfig, PruneConfig, QatConfig

# ptq_dynamic and ptq_float16 are covered by test_pipeline_steps.py; conversions dominate this module's time.
ALL = ["fp32", "ptq_int8", "ptq_int16x8", "qat_int8", "mixed", "pqat_int8", "cqat_int8", "pcqat_int8",
       "channel_pruned_qat_int8"]
TINY_PRUNE = dict(target_sparsity=0.5, epochs=2, pqat_epochs=1, channel_fraction=0.5, channel_epochs=1,
                  qat_epochs=1, batch_size=16, learning_rate=0.005)
# 4 clusters: the tiny model's pointwise conv has 16 weights per output channel, so the bound bites
TINY_CLUSTER = dict(number_of_clusters=4, epochs=1, qat_epochs=1, batch_size=16, learning_rate=0.001)


def build_comp(tmp_path_factory, tiny_prepared):
    from edgeqat.steps.cluster import cluster
    from edgeqat.steps.convert import convert
    from edgeqat.steps.evaluate import evaluate
    from edgeqat.steps.prune import prune
    from edgeqat.steps.qat import qat
    from edgeqat.models.io import save_model

    d = tmp_path_factory.mktemp("comp")
    p = tiny_prepared
    out = {"dir": d, "prepared": p}
    # Untrained on purpose: every assertion is about the files' structure, and a 4-layer
    # model keeps the seven conversions (the bulk of this module's time) short.
    save_model(tiny_model(), d / "fp32.keras")
    out["qat"] = qat(QatConfig(epochs=1, batch_size=16, keep_float=["@last"]), p, d / "fp32.keras", d / "qat.h5",
                     mixed_out=d / "mixed.h5", sensitivity_json=d / "sensitivity.json", sensitivity_md=d / "sensitivity.md")
    out["prune"] = prune(PruneConfig(**TINY_PRUNE), p, d / "fp32.keras", d / "pqat.h5", d / "cp.h5",
                         history_path=d / "prune_history.csv", pruned_out=d / "pruned.keras")
    out["cluster"] = cluster(ClusterConfig(**TINY_CLUSTER), p, d / "fp32.keras", d / "pruned.keras", d / "cqat.h5",
                             d / "pcqat.h5")
    out["convert"] = convert(ConvertConfig(variants=ALL), p, d / "fp32.keras", d / "qat.h5", d / "tflite",
                             mixed_model=d / "mixed.h5", pqat_model=d / "pqat.h5", cqat_model=d / "cqat.h5",
                             pcqat_model=d / "pcqat.h5", channel_pruned_model=d / "cp.h5")
    out["evaluate"] = evaluate(EvaluateConfig(latency_runs=5, warmup_runs=1), p, d / "tflite", d / "fp32.keras",
                               d / "summary.json", d / "summary.md", pareto_png=d / "pareto.png")
    out["card"] = json.loads((d / "tflite" / "model_card.json").read_text())
    return out


def tiny_model():
    """stem conv-BN-ReLU -> depthwise-separable block -> pooling -> dense: the DS-CNN's parts."""
    from edgeqat.models.zoo import _conv_bn_relu, _ds_block
    from edgeqat.tf_compat import keras, set_determinism

    set_determinism(0)
    inp = keras.Input((16, 16, 1), name="image")
    x = _ds_block(keras, _conv_bn_relu(keras, inp, 16, 3, 1, "stem"), 32, 2, "block1")
    out = keras.layers.Dense(4, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    return keras.Model(inp, out, name="tiny")


