"""Keras 3 model files (what tf.keras saves since TensorFlow 2.16) as tf-keras models.

Every model here was built and saved by Keras 3 itself (tests/keras3_build.py), with random
values in every variable so that a weight in the wrong slot shows. The fast tests read the
files Keras 3 wrote once, kept in tests/data/keras3 with Keras 3's outputs on seeded inputs
(`python tests/keras3_models.py` writes them again): a Keras 3 process costs 10-20 s on 2
cores. The slow ones run Keras 3 live: MobileNetV2 built in a child process, and edgeqat's
own check against Keras 3. Each file is translated (no Keras 3 in this process) and its
outputs compared with what Keras 3 computed on the same inputs. The matrix through the
stages is in tests/integration/test_keras3_slow.py.
"""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

import keras3_models as k3
from edgeqat.errors import ModelError

REFUSALS = [  # (kind, what the one line must say)
    ("with_lambda", r"layer times_two cannot be translated to tf-keras: it is a Lambda: it stores Python code"),
    ("with_custom_layer", r"layer doubler cannot be translated to tf-keras: '(user>)?Doubler' is custom code from "
                          r"registered name 'user>Doubler'"),
    ("with_mixed_precision", r"layer relu_fp16 cannot be translated to tf-keras: it computes in mixed_float16"),
    ("with_hard_sigmoid", r"layer hs cannot be translated to tf-keras: activation 'hard_sigmoid': Keras 3's "
                          r"hard_sigmoid is relu6\(x \+ 3\) / 6"),
    ("with_lora", r"layer head_lora \(Dense\) cannot be built in tf-keras: its options lora_rank=2, lora_alpha=2 "
                  r"have no tf-keras equivalent"),
    # .h5 does not record the module: the call's two positional arguments give it away there
    ("with_ops", r"layer multiply cannot be translated to tf-keras: (it is a keras.ops call \(Multiply\)|it is called "
                 r"with 2 positional arguments .*a keras.ops call)"),
]


@pytest.fixture(scope="module")
def built():
    """The Keras 3 files kept in the repository (no Keras 3 process)."""
    return k3.GOLDEN


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """MobileNetV2 under a head, built by Keras 3 now (9 MB a file: not kept)."""
    d = tmp_path_factory.mktemp("keras3")
    seconds = k3.build(k3.golden_jobs(d, [("mobilenetv2", 3)]), d)
    print(f"\nKeras 3 built and saved MobileNetV2 in {seconds:.1f} s")
    return d


SLOW = pytest.mark.slow  # a Keras 3 process
MATRIX = [pytest.param(*m, marks=SLOW) if m[0] == "mobilenetv2" else m for m in k3.MATRIX]


@pytest.mark.parametrize("fmt", k3.FORMATS)
@pytest.mark.parametrize("kind,channels,head", MATRIX, ids=[m[0] for m in k3.MATRIX])
def test_matrix_model_translates_with_the_same_outputs(request, kind, channels, head, fmt):
    import time

    from edgeqat.models.keras3 import is_keras3, translate_file

    built = request.getfixturevalue("mobilenet" if kind == "mobilenetv2" else "built")
    path = built / f"{kind}{fmt}"
    assert is_keras3(path)
    t0 = time.monotonic()
    model, used = translate_file(path)
    seconds = time.monotonic() - t0
    assert type(model).__module__.startswith("tf_keras"), type(model)
    diff = k3.max_output_difference(model, built / f"{kind}.probe.npy", built / f"{kind}.inputs.npy")
    scale = float(np.abs(np.load(built / f"{kind}.probe.npy")).max())
    print(f"\n{kind}{fmt}: translated in {seconds:.2f} s, max |tf-keras - Keras 3| = {diff:.3g} on 32 samples "
          f"(outputs up to {scale:.3g})")
    # random weights in every variable make large outputs on the 150-layer MobileNetV2: the
    # loader's own rule, 1e-4 relative to outputs above 1 (trained models: tests/integration)
    assert diff <= 1e-4 * max(1.0, scale)
    assert model.input_shape[1:] == (k3.size_of(kind), k3.size_of(kind), channels)
    if head == "softmax":
        np.testing.assert_allclose(np.load(built / f"{kind}.probe.npy").sum(-1), 1.0, rtol=1e-5)


def test_translation_table_is_walked_in_full(built):
    """Every entry of the one table is used by some Keras 3 file here, and each such file
    computes the same in tf-keras as in Keras 3."""
    from edgeqat.models.keras3 import table, translate_file

    used: set[str] = set()
    for kind, _ in k3.ZOO:
        for fmt in k3.FORMATS:
            model, u = translate_file(built / f"{kind}{fmt}")
            used |= u
            diff = k3.max_output_difference(model, built / f"{kind}.probe.npy", built / f"{kind}.inputs.npy")
            assert diff <= 1e-4, (kind, fmt, diff)  # softmax outputs
    assert sorted(table.entries() - used) == []
    assert used <= table.entries()


@pytest.mark.parametrize("fmt", k3.FORMATS)
@pytest.mark.parametrize("kind,pattern", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_what_cannot_cross_is_refused_naming_the_layer(built, kind, pattern, fmt):
    from edgeqat.models.io import load_model

    path = built / f"{kind}{fmt}"
    with pytest.raises(ModelError, match=pattern) as err:
        load_model(path, trust_code=True)  # trusting the file changes nothing: Keras 3 code cannot run in tf-keras
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "DTypePolicy" not in message  # the old, misleading refusal


@SLOW
def test_a_keras3_file_is_the_pretrained_model_of_the_train_stage(built, tiny_prepared, tmp_path, capsys):
    """train.from_model = a Keras 3 .keras: translated, checked against Keras 3 in a child
    process on the prepared images, flattened, and saved as a tf-keras file."""
    from edgeqat.config import TrainConfig
    from edgeqat.models.io import load_model
    from edgeqat.steps.train import train

    m = train(TrainConfig(from_model=str(built / "sequential.keras")), tiny_prepared, tmp_path / "fp32.keras")
    assert m["epochs_run"] == 0
    said = capsys.readouterr().err
    # checked on the prepared validation images (16 in this split)
    assert re.search(r"sequential\.keras: Keras 3\.\d+\.\d+ model translated to tf-keras; same outputs on 16 samples "
                     r"\(max difference [0-9.e-]+\)", said), said
    with zipfile.ZipFile(tmp_path / "fp32.keras") as z:
        assert json.loads(z.read("metadata.json"))["keras_version"].startswith("2.")
    flat = load_model(tmp_path / "fp32.keras")
    assert [l.name for l in flat.layers][-1] == "dense"


@SLOW
def test_a_wrong_translation_is_caught_by_the_check(built, monkeypatch):
    """The check against Keras 3 can fail: with ReLU's max_value dropped as if it changed
    nothing, the blocks model's ReLU(6.0) layers become plain ReLUs, and the file is refused."""
    from edgeqat.models.keras3 import load_keras3, table

    monkeypatch.setitem(table.LAYERS, "ReLU", table.Layer(drop={"max_value": table.ANY}))
    inputs = np.load(built / "blocks.inputs.npy") * 50  # large enough to pass 6 somewhere
    with pytest.raises(ModelError, match=r"blocks\.keras: the tf-keras translation of this Keras 3 model computes "
                                         r"different outputs \(max difference"):
        load_keras3(built / "blocks.keras", samples=inputs)


def test_keras3_weights_that_do_not_match_the_config_are_refused(built, tmp_path):
    """model.weights.h5 records each layer's name beside its variables: a file whose
    weights belong to another model is refused, not loaded into the wrong layers."""
    from edgeqat.models.keras3 import translate_file

    src, dest = built / "sequential.keras", tmp_path / "mixed_up.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "config.json":
                cfg = json.loads(data)
                cfg["config"]["layers"][1]["config"]["name"] = "renamed_conv"
                data = json.dumps(cfg).encode()
            zout.writestr(info, data)
    with pytest.raises(ModelError, match=r"mixed_up\.keras: model\.weights\.h5 holds layer 'conv2d' at "
                                         r"layers/conv2d/vars, where config\.json has 'renamed_conv'"):
        translate_file(dest)


def test_default_layer_names_survive_quantization(tmp_path):
    """Keras names layers conv2d, batch_normalization, ... unless told otherwise, so a user's
    file (Keras 3 or 2) carries those names. Loaded in a fresh session, tfmot's split of a
    SeparableConv2D must not create another 'conv2d' (it did: the rebuild then fed the user's
    conv2d the wrong tensor), and the BatchNormalization after it is folded, not left float."""
    from edgeqat.compression.annotate import quantize
    from edgeqat.models.io import load_model, save_model
    from edgeqat.tf_compat import keras, set_determinism

    L = keras.layers
    set_determinism(0)  # a fresh session's names: conv2d, batch_normalization, ...
    inp = keras.Input((16, 16, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)))
    x = L.ReLU()(L.BatchNormalization()(L.SeparableConv2D(16, 3, padding="same")(x)))
    model = keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling2D()(x)))
    save_model(model, tmp_path / "defaults.keras")
    set_determinism(0)  # fresh name counters again, as in a stage's own process

    loaded = load_model(tmp_path / "defaults.keras")
    assert "conv2d" in [l.name for l in loaded.layers]
    wrapped, report = quantize(loaded)
    assert report == {"as_depthwise": [], "output_only": []}
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    assert wrapped(x).shape == (4, 4)
