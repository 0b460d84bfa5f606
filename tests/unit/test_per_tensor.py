"""``convert.per_channel: false`` means one weight scale per tensor in every variant that has
quantized weights, QAT family included: the stages are run as DVC runs them (the stage runner
with the whole params), and the .tflite files are read with LiteRT's tensor details."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgeqat.config import parse_params

from compressed_chain import TINY_CLUSTER, TINY_PRUNE, tiny_model


def scale_counts(path) -> list[tuple[str, str, int]]:
    """(op, weight dtype, number of scales) of every conv/dense op, as the file stores them."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))  # not allocated: XNNPACK would expand a Dense scale per channel
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    producer = {o: op for op in ops for o in op["outputs"]}
    out = []
    for op in ops:
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            i = op["inputs"][1]
            i = producer[i]["inputs"][0] if i in producer else i
            out.append((op["op_name"], np.dtype(tensors[i]["dtype"]).name,
                        tensors[i]["quantization_parameters"]["scales"].size))
    return out


def _workspace(root, tiny_prepared):
    from edgeqat.models.io import save_model

    shutil.copytree(tiny_prepared, root / "data" / "prepared")
    save_model(tiny_model(), root / "models" / "fp32.keras")
    return root


def _params(variants, **sections):
    return parse_params({"convert": {"per_channel": False, "variants": variants},
                         "evaluate": {"headline": variants[-1], "reference": variants[-1]},
                         "validate": {"model": variants[-1]}, "register": {"variant": variants[-1]}, **sections})


def _assert_one_scale_per_tensor(root, card, variants):
    counts = {name: [c for c in scale_counts(root / "models" / "tflite" / f"{name}.tflite") if c[1] == "int8"]
              for name in variants}
    assert all(counts.values()), counts
    assert {name: [c for c in cs if c[2] != 1] for name, cs in counts.items()} == {name: [] for name in variants}
    for name in variants:  # and the card, read from the file, says so
        assert card["variants"][name]["weights"]["granularity"] == "per-tensor", name


def test_per_tensor_reaches_ptq_qat_and_mixed_through_the_stages(tmp_path, tiny_prepared):
    import json

    from edgeqat.adapters.runner import run_stage

    root = _workspace(tmp_path, tiny_prepared)
    variants = ["ptq_int8", "mixed", "qat_int8"]
    params = _params(variants, qat={"epochs": 1, "batch_size": 16, "keep_float": ["@last"]})
    run_stage("qat", params, root)
    run_stage("convert", params, root)
    card = json.loads((root / "models" / "tflite" / "model_card.json").read_text())
    _assert_one_scale_per_tensor(root, card, ["ptq_int8", "mixed", "qat_int8"])
    # mixed keeps its head float, and the QAT models learnt one range per kernel
    assert scale_counts(root / "models" / "tflite" / "mixed.tflite")[-1][1] == "float32"
    assert card["variants"]["qat_int8"]["integer_only"] is True


@pytest.mark.slow
def test_per_tensor_reaches_the_pruned_and_clustered_variants_through_the_stages(tmp_path, tiny_prepared):
    """~2 min on 2 cores: the prune and cluster stages' four fine-tunes, then four conversions."""
    import json

    from edgeqat.adapters.runner import run_stage

    root = _workspace(tmp_path, tiny_prepared)
    variants = ["pqat_int8", "cqat_int8", "pcqat_int8", "channel_pruned_qat_int8"]
    params = _params(variants, prune=TINY_PRUNE, cluster=TINY_CLUSTER)
    for stage in ("prune", "cluster", "convert"):
        run_stage(stage, params, root)
    card = json.loads((root / "models" / "tflite" / "model_card.json").read_text())
    _assert_one_scale_per_tensor(root, card, variants)
    for name in variants:
        assert card["variants"][name]["integer_only"] is True, name
