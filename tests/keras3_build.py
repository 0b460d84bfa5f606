"""Build, train and save Keras 3 models, as a user of TensorFlow >= 2.16 does: run as a child
process WITHOUT ``TF_USE_LEGACY_KERAS`` (``tests/keras3_models.py`` starts it), so ``keras``
here is Keras 3. Never imported by the test session itself.

    python keras3_build.py JOBS.json

Each job: ``{"kind", "shape", "classes", "out" (folder), "formats": [".keras", ".h5"],
"train": npz of x/y or null, "epochs", "perturb": bool, "probe": npy of inputs or null,
"test": npz of x/y or null}``. Writes ``<out>/<kind><format>`` files, ``<out>/<kind>.probe.npy``
(Keras 3's outputs on the probe inputs) and ``<out>/<kind>.json`` (its test accuracy).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

assert os.environ.get("TF_USE_LEGACY_KERAS") in (None, "", "0"), "run without TF_USE_LEGACY_KERAS: this is Keras 3"

import numpy as np  # noqa: E402

import keras  # noqa: E402
from keras import layers as L  # noqa: E402

assert keras.__version__.startswith("3."), keras.__version__


# --- the matrix --------------------------------------------------------------


def BN():
    # momentum 0.9: with 0.99 the moving statistics lag a short training, and the model scores
    # at chance in inference mode (measured: 0.95 train, 0.50 test accuracy after 20 epochs)
    return L.BatchNormalization(momentum=0.9)


def sequential(shape, k):
    """Sequential, softmax head."""
    return keras.Sequential([
        keras.Input(shape), L.Conv2D(8, 3, padding="same", use_bias=False), BN(), L.ReLU(),
        L.MaxPooling2D(), L.DepthwiseConv2D(3, padding="same"), L.ReLU(), L.Conv2D(16, 1, activation="relu"),
        L.GlobalAveragePooling2D(), L.Dropout(0.1), L.Dense(k, activation="softmax"),
    ], name="k3_sequential")


def rescaling(shape, k):
    """Functional, fed raw 0..255 pixels through its own Rescaling; logits head."""
    inp = keras.Input(shape, name="pixels")
    x = L.Rescaling(1 / 127.5, offset=-1.0)(inp)
    x = L.ReLU()(BN()(L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)))
    x = L.ReLU()(BN()(L.Conv2D(16, 3, padding="same", use_bias=False)(x)))
    x = L.ReLU()(BN()(L.SeparableConv2D(16, 3, padding="same")(x)))
    return keras.Model(inp, L.Dense(k)(L.GlobalAveragePooling2D()(x)), name="k3_rescaling")


def blocks(shape, k):
    """BatchNormalization, DepthwiseConv2D, SeparableConv2D, Add, Concatenate, Dropout, ReLU6; softmax head."""
    inp = keras.Input(shape)
    x = L.ReLU(6.0)(BN()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
    y = L.ReLU(6.0)(BN()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
    x = L.Add()([x, L.Conv2D(8, 1)(y)])
    x = L.Concatenate()([x, L.SeparableConv2D(8, 3, padding="same", activation="relu")(x)])
    # a 1x1 conv feeding a 3x3 one: what channel pruning (the prune stage) can thin
    x = L.ReLU(6.0)(BN()(L.Conv2D(16, 1, use_bias=False)(L.MaxPooling2D()(x))))
    x = L.ReLU(6.0)(BN()(L.Conv2D(16, 3, padding="same", use_bias=False)(x)))
    x = L.Dropout(0.2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, L.Dense(k, activation="softmax")(x), name="k3_blocks")


def mobilenetv2(shape, k):
    """keras.applications.MobileNetV2(include_top=False, weights=None) called as one layer under
    a logits head, its BatchNormalizations at momentum 0.9 (see BN) so a short training holds."""
    base = keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights=None, alpha=0.35)
    for layer in base.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = 0.9
    inp = keras.Input(shape)
    x = L.GlobalAveragePooling2D()(base(inp))
    return keras.Model(inp, L.Dense(k)(L.Dropout(0.2)(x)), name="k3_mobilenetv2")


# --- every entry of the translation table ----------------------------------------------

ACTIVATIONS = ["linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "silu", "gelu", "elu", "selu",
               "softplus", "softsign", "exponential", "mish"]


def zoo_functional(shape, k):
    """Every layer, object and activation of edgeqat's Keras 3 table, in one functional graph
    (with a nested Sequential)."""
    from keras import constraints as C, initializers as I, regularizers as R
    from keras.src.dtype_policies.dtype_policy import FloatDTypePolicy

    inp = keras.Input(shape, name="image")
    x = L.Rescaling(1 / 255.0)(inp)
    x = L.Normalization(mean=np.array([0.4] * shape[-1]), variance=np.array([0.09] * shape[-1]))(x)
    x = L.Resizing(12, 12)(x)
    x = L.CenterCrop(10, 10)(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.Cropping2D(1)(x)
    x = L.Conv2D(8, 3, padding="same", kernel_initializer=I.HeNormal(seed=1), kernel_regularizer=R.L2(1e-4),
                 kernel_constraint=C.MaxNorm(3.0), bias_initializer=I.Constant(0.01))(x)
    x = L.BatchNormalization(beta_regularizer=R.L1(1e-5), gamma_constraint=C.NonNeg())(x)
    x = L.LeakyReLU(negative_slope=0.1)(x)
    d = L.DepthwiseConv2D(3, padding="same", depthwise_initializer=I.GlorotNormal(seed=2),
                          depthwise_constraint=C.UnitNorm(axis=[0, 1, 2]))(x)
    s = L.SeparableConv2D(8, 3, padding="same", pointwise_initializer=I.LecunNormal(seed=3),
                          depthwise_initializer=I.LecunUniform(seed=4), bias_regularizer=R.L1L2(1e-5, 1e-5),
                          pointwise_constraint=C.MinMaxNorm(0.0, 2.0, axis=[0, 1, 2]))(x)
    x = L.Add()([x, d])
    x = L.Subtract()([x, s])
    x = L.Multiply()([x, L.Activation("sigmoid")(s)])
    x = L.Average()([x, d])
    x = L.Maximum()([x, s])
    x = L.Minimum()([x, d])
    x = L.PReLU(alpha_initializer=I.RandomUniform(0.0, 0.2, seed=5), shared_axes=[1, 2])(x)
    x = L.ELU(alpha=0.5)(x)
    x = L.SpatialDropout2D(0.1)(x, training=False)  # a call keyword, kept in the graph
    x = L.GaussianNoise(0.1)(x)
    x = L.GaussianDropout(0.1)(x)
    up = L.Conv2DTranspose(4, 3, strides=2, padding="same", kernel_initializer=I.TruncatedNormal(0.0, 0.1, seed=6))(x)
    up = L.UpSampling2D(interpolation="bilinear")(L.MaxPooling2D(4)(up))
    x = L.AveragePooling2D(2)(L.Concatenate()([x, L.Identity()(up)]))
    x = L.LayerNormalization(gamma_initializer=I.RandomNormal(1.0, 0.05, seed=7))(x)
    x = L.Conv2D(8, 1, kernel_initializer=I.VarianceScaling(0.5, seed=8), bias_initializer=I.Zeros(),
                 dtype=FloatDTypePolicy("float32"))(x)
    branches = [L.GlobalAveragePooling2D()(L.Activation(a)(L.Conv2D(4, 1, kernel_initializer=I.Orthogonal(seed=9),
                                                                     name=f"pre_{a}")(x))) for a in ACTIVATIONS]
    # the activations' outputs meet in a Dense with the other activation-carrying options
    g = L.Concatenate()([L.GlobalMaxPooling2D()(x), *branches])
    nested = keras.Sequential([keras.Input((g.shape[-1],)), L.Dense(16, activation="relu",
                                                                    kernel_initializer=I.GlorotUniform(seed=10)),
                               L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.0), L.Dropout(0.1)],
                              name="nested_head")
    nested.trainable = False  # frozen, as in transfer learning: its variables then all count as non-trainable
    h = nested(g)
    h = L.Reshape((4, 4))(h)
    h = L.Permute((2, 1))(h)
    h = L.Flatten()(h)
    out = L.Softmax()(L.Dense(k, kernel_initializer=I.HeUniform(seed=11), bias_initializer=I.Ones(),
                              kernel_regularizer=R.L2(1e-4))(h))
    return keras.Model(inp, out, name="zoo")


def zoo_sequential(shape, k):
    """A plain Sequential with a deferred head (no InputLayer inside the nested part)."""
    return keras.Sequential([keras.Input(shape), L.Conv2D(4, 3, activation="tanh"), L.Flatten(),
                             L.Dense(k, activation="softmax")], name="zoo_seq")


# --- what cannot cross -------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="user")
class Doubler(L.Layer):
    def call(self, x):
        return x * 2.0


def _small(shape, k, middle):
    inp = keras.Input(shape)
    x = middle(L.Conv2D(4, 3, name="conv")(inp))
    return keras.Model(inp, L.Dense(k)(L.GlobalAveragePooling2D()(x)), name="small")


def with_lambda(shape, k):
    return _small(shape, k, L.Lambda(lambda t: t * 2.0, name="times_two"))


def with_custom_layer(shape, k):
    return _small(shape, k, Doubler(name="doubler"))


def with_mixed_precision(shape, k):
    return _small(shape, k, L.ReLU(name="relu_fp16", dtype="mixed_float16"))


def with_hard_sigmoid(shape, k):
    return _small(shape, k, L.Activation("hard_sigmoid", name="hs"))


def with_lora(shape, k):
    inp = keras.Input(shape)
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inp))
    return keras.Model(inp, L.Dense(k, lora_rank=2, name="head_lora")(x), name="lora")


def with_ops(shape, k):  # keras.ops in a functional graph: an operation, not a layer
    inp = keras.Input(shape)
    x = keras.ops.multiply(L.Conv2D(4, 3, name="conv")(inp), 2.0)
    return keras.Model(inp, L.Dense(k)(L.GlobalAveragePooling2D()(x)), name="ops")


KINDS = {f.__name__: f for f in (sequential, rescaling, blocks, mobilenetv2, zoo_functional, zoo_sequential,
                                 with_lambda, with_custom_layer, with_mixed_precision, with_hard_sigmoid, with_lora,
                                 with_ops)}


def perturb(model, seed=0):
    """Random values in every variable (variances kept positive), so that a weight placed in
    the wrong slot shows in the outputs; untrained models have many ones and zeros."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        if "variance" in v.path or "count" in v.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in v.path or "alpha" in v.path:
            value = rng.uniform(0.5, 1.2, shape)
        else:
            value = rng.normal(0, 0.3, shape)
        v.assign(value.astype(v.dtype))


def run(job: dict) -> None:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    keras.backend.clear_session()  # layer names from 'conv2d' again, as in a user's fresh session
    keras.utils.set_random_seed(job.get("seed", 0))
    model = KINDS[job["kind"]](tuple(job["shape"]), job["classes"])
    if job.get("perturb"):
        perturb(model, job.get("seed", 0))
    if job.get("train"):
        d = np.load(job["train"])
        logits = model.layers[-1].get_config().get("activation") not in ("softmax",) and not isinstance(
            model.layers[-1], L.Softmax)
        model.compile(optimizer=keras.optimizers.Adam(job.get("lr", 0.01)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits), metrics=["accuracy"])
        model.fit(d["x"], d["y"], epochs=job.get("epochs", 5), batch_size=32, verbose=0, shuffle=True)
    stem = job.get("name", job["kind"])
    for fmt in job.get("formats", [".keras", ".h5"]):
        model.save(out / f"{stem}{fmt}")
    if job.get("probe"):
        np.save(out / f"{stem}.probe.npy", np.asarray(model.predict(np.load(job["probe"]), verbose=0), np.float32))
    result = {"keras_version": keras.__version__}
    if job.get("test"):
        t = np.load(job["test"])
        result["test_accuracy"] = float(np.mean(np.argmax(model.predict(t["x"], verbose=0), -1) == t["y"]))
    (out / f"{stem}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    for job in json.loads(Path(sys.argv[1]).read_text()):
        run(job)
