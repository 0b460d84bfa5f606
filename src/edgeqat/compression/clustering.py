"""Weight clustering (``tfmot.clustering``) and cluster-preserving QAT (CQAT, PCQAT).

Clustering replaces the weights of a kernel by the nearest of ``number_of_clusters``
centroids, trained while fine-tuning; ``strip_clustering`` leaves a plain Keras model whose
kernels hold at most that many distinct values (per output channel with ``per_channel``).
QAT then runs with tfmot's ``Default8BitClusterPreserveQuantizeScheme``, which keeps the
centroids (and, with ``preserve_sparsity``, the zeros of a pruned model: PCQAT) through
fake quantization, so the int8 .tflite keeps them too.

Which kernels: Conv2D and Dense, the layers whose clusters CQAT preserves (tfmot's
clustering registry lists no weights for DepthwiseConv2D, and its cluster-preserve registry
disables it). Layers are wrapped here with tfmot's own ``ClusterWeights`` rather than
through ``cluster_weights``: in tfmot 0.8.1 ``cluster_weights(..., cluster_per_channel=True)``
counts a Conv2D's channels from ``trainable_weights[-1]``, which is the kernel itself when
the layer has no bias, so it leaves every BatchNorm-followed convolution (all of the zoo's)
unclustered with a "not enough weights" warning.

A CQAT-trained model carries the clustering variables (centroids, indices, original
weights) in its quantize wrappers, and its HDF5 file does not reload (the rebuilt wrappers
expect fewer weights). :func:`as_default_qat` strips them (``strip_clustering_cqat``) and
moves the trained weights into tfmot's default 8-bit wrapping of the same model: the same
quantizer variables, so the converter writes the same weights, and later stages load it
like any QAT model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeqat.errors import ModelError

# params.yaml names -> tfmot.clustering.keras.CentroidInitialization members
CENTROID_INITS = {"kmeans_plus_plus": "KMEANS_PLUS_PLUS", "density_based": "DENSITY_BASED", "linear": "LINEAR",
                  "random": "RANDOM"}
CLUSTERED_KINDS = ("Conv2D", "Dense")  # exact classes: Conv2DTranspose (a Conv2D) keeps its kernel elsewhere


def cluster_wrap(model: Any, number_of_clusters: int, centroid_init: str, *, per_channel: bool = False,
                 preserve_sparsity: bool = False) -> tuple[Any, dict[str, Any]]:
    """(model with its Conv2D/Dense kernels wrapped for clustering, report of what was wrapped)."""
    from edgeqat.tf_compat import keras, tfmot, tfmot_cluster_wrapper

    init = getattr(tfmot.clustering.keras.CentroidInitialization, CENTROID_INITS[centroid_init])
    report: dict[str, Any] = {"clustered": [], "per_channel": [], "skipped": {}}

    def wrap(layer: Any) -> Any:
        kind = type(layer).__name__
        if kind not in CLUSTERED_KINDS:
            if kind == "DepthwiseConv2D":
                report["skipped"][layer.name] = "depthwise kernels: tfmot clusters none"
            return layer
        channel = per_channel and kind == "Conv2D"  # tfmot clusters Dense kernels per tensor only
        size = int(np.prod(layer.kernel.shape))
        per = size // int(layer.kernel.shape[-1]) if channel else size
        if per <= number_of_clusters:
            report["skipped"][layer.name] = (f"{per} weights {'per channel ' if channel else ''}"
                                             f"<= {number_of_clusters} clusters")
            return layer
        report["clustered"].append(layer.name)
        if channel:
            report["per_channel"].append(layer.name)
        return tfmot_cluster_wrapper.ClusterWeights(layer, number_of_clusters, init, preserve_sparsity, channel)

    try:
        wrapped = keras.models.clone_model(model, clone_function=wrap)
    except (ValueError, RuntimeError, TypeError) as err:
        raise ModelError(f"tfmot cannot cluster model {model.name!r}: {err}") from None
    if not report["clustered"]:
        raise ModelError(f"model {model.name!r}: no Conv2D or Dense kernel has more weights than "
                         f"cluster.number_of_clusters ({number_of_clusters}); nothing to cluster")
    return wrapped, report


def strip(model: Any) -> Any:
    """The clustered model as a plain Keras model (each kernel holds its centroids)."""
    from edgeqat.tf_compat import tfmot

    return tfmot.clustering.keras.strip_clustering(model)


def cluster_preserving_quantize(model: Any, preserve_sparsity: bool, clustered_per_tensor: frozenset[str] = frozenset(),
                                per_tensor: frozenset[str] = frozenset()) -> Any:
    """QAT wrapping that keeps a stripped clustered model's centroids (and zeros: PCQAT):
    one set of centroids for the Conv2D kernels in ``clustered_per_tensor``, one weight scale
    for those in ``per_tensor`` (``compression.schemes``)."""
    from edgeqat.compression.annotate import quantize
    from edgeqat.compression.schemes import centroids_per_tensor, cluster_preserving_scheme

    scheme = cluster_preserving_scheme(preserve_sparsity, per_tensor)
    what = "apply sparsity- and cluster-preserving QAT to" if preserve_sparsity else "apply cluster-preserving QAT to"
    with centroids_per_tensor(clustered_per_tensor):
        return quantize(model, scheme=scheme, what=what)[0]


def as_default_qat(cqat: Any, clustered: Any, per_tensor: frozenset[str] = frozenset()) -> Any:
    """The CQAT-trained weights in the default 8-bit wrapping of ``clustered`` (the stripped
    FP32 model CQAT started from; same scales and layout): a QAT model that saves and reloads."""
    from edgeqat.compression.annotate import quantize
    from edgeqat.compression.schemes import plain_scheme
    from edgeqat.tf_compat import tfmot

    trained = tfmot.experimental.combine.strip_clustering_cqat(cqat)
    plain = quantize(clustered, scheme=plain_scheme(per_tensor))[0]
    if len(trained.layers) != len(plain.layers):
        raise ModelError(f"CQAT model {cqat.name!r}: {len(trained.layers)} layers after stripping, "
                         f"the default QAT wrapping has {len(plain.layers)}")
    for src, dst in zip(trained.layers, plain.layers):
        have, want = _by_key(src), _by_key(dst)
        if set(have) != set(want):
            raise ModelError(f"CQAT layer {src.name!r}: weights {sorted(have)} do not match the default QAT "
                             f"wrapping's {sorted(want)}")
        for key, var in want.items():
            var.assign(have[key].numpy())
    return plain


def _by_key(layer: Any) -> dict[str, Any]:
    # Variable names repeat the layer's name, which Keras numbers per model (quantize_layer_1).
    return {w.name.split("/")[-1].replace(layer.name, ""): w for w in layer.weights}


def distinct_values(model: Any) -> dict[str, dict[str, int]]:
    """Per Conv2D/Dense kernel of a plain Keras model: distinct values in the tensor and the
    most in one output channel."""
    out = {}
    for layer in model.layers:
        if type(layer).__name__ in CLUSTERED_KINDS:
            k = layer.kernel.numpy()
            per = k.reshape(-1, k.shape[-1])
            out[layer.name] = {"tensor": int(np.unique(k).size),
                               "per_channel": int(max(np.unique(per[:, c]).size for c in range(per.shape[1])))}
    return out
