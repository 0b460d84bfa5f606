"""The quantization schemes edgeqat wraps models with: tfmot's, with per-tensor int8 weights
where asked, and fake-quantized kernels under a ReLU.

Per-tensor weight scales come from two places:

- ``convert.per_channel: false`` (every QAT-family variant): every Conv2D and DepthwiseConv2D
  kernel gets one scale (tfmot scales them per output channel; its Dense kernels are per
  tensor already). BatchNorms are folded into their convolutions first
  (:func:`per_tensor_model`): the converter would fold a BatchNorm's per-channel factor into
  a kernel whose single scale cannot carry it, and leave that convolution in float.
- **Clustered kernels** (CQAT, PCQAT). With per-channel scales each channel's scale maps the
  tensor's 16 centroids to different codes, and a 16-cluster kernel stores dozens of distinct
  codes. With one scale per tensor, 16 centroids are at most 16 codes. (Clustering per channel
  keeps tfmot's per-channel scales unless ``convert.per_channel`` is false.)

Both need one change to tfmot's layout: **Conv/Dense followed by a ReLU layer keeps its weight
fake-quant.** tfmot's ``LayerReLUQuantize`` transform, meant to keep a fake-quant out of
``Add -> ReLU``, also matches ``Conv2D -> ReLU`` and gives the convolution a no-op config: its
kernel then trains unquantized (and without a cluster-preserving quantizer), and the converter
quantizes it afterwards on its own, per channel. That pattern is what a BatchNorm-folded
model is made of (``edgeqat.models.batchnorm``), so here the ReLU transforms cover ``Add``
only, and a convolution feeding a ReLU gets a no-op *activation* instead, as tfmot does for
``Conv2D -> BatchNorm -> ReLU``: weights fake-quantized, output quantized after the ReLU.

And one fix to tfmot's cluster-preserving quantizer: it guesses that a Conv2D kernel was
clustered per channel whenever its channels hold about as many distinct values each, which a
kernel clustered per tensor also does (each channel uses most of the 16 centroids). It then
trains each channel's centroids apart, and the tensor ends with many more than 16 values.
:func:`centroids_per_tensor` tells it which kernels were clustered per tensor.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

# Kernels tfmot scales per output channel, and the attribute holding each; Dense kernels are
# per-tensor in tfmot already.
KERNEL_ATTR = {"Conv2D": "kernel", "DepthwiseConv2D": "depthwise_kernel"}


def _tfmot() -> dict[str, Any]:
    from edgeqat.tf_compat import tfmot_quant as q

    cp = q.collab_opts.cluster_preserve
    return dict(qaa=q.quantize_aware_activation, qlt=q.quantize_layout_transform, qutils=q.utils,
                cpr=cp.cluster_preserve_quantize_registry,
                ppr=q.collab_opts.prune_preserve.prune_preserve_quantize_registry, registry=q.default_8bit.default_8bit_quantize_registry,
                t=q.default_8bit.default_8bit_transforms, model_transformer=q.graph_transformations.model_transformer,
                transforms=q.graph_transformations.transforms)


def _layout_transform(m: dict[str, Any]) -> Any:
    t, LayerPattern = m["t"], m["transforms"].LayerPattern

    class AddReLUQuantize(t.LayerReLUQuantize):
        """tfmot's Add -> ReLU rule, without the convolutions."""

        def pattern(self) -> Any:
            return LayerPattern("ReLU", inputs=[LayerPattern("Add")])

    class AddReluActivationQuantize(t.LayerReLUQuantize):
        def pattern(self) -> Any:
            return LayerPattern("Activation", config={"activation": "relu"}, inputs=[LayerPattern("Add")])

    class WeightedReLUQuantize(m["transforms"].Transform):
        """Conv2D/DepthwiseConv2D/Dense -> ReLU: no fake-quant between them, weights kept."""

        def pattern(self) -> Any:
            return LayerPattern("ReLU", inputs=[LayerPattern("Conv2D|DepthwiseConv2D|Dense",
                                                             config={"activation": "linear"})])

        def replacement(self, match_layer: Any) -> Any:
            weighted = match_layer.input_layers[0]
            if weighted.metadata.get("quantize_config") is None:  # a user's own config wins
                weighted.layer["config"]["activation"] = m["qutils"].serialize_activation(
                    m["qaa"].NoOpActivation(), use_legacy_format=True)
            return match_layer

        def custom_objects(self) -> dict[str, Any]:
            return {"NoOpActivation": m["qaa"].NoOpActivation}

    class Layout(m["qlt"].QuantizeLayoutTransform):
        def apply(self, model: Any, layer_quantize_map: dict) -> Any:
            steps = [t.InputLayerQuantize(), t.SeparableConv1DQuantize(), t.SeparableConvQuantize(),
                     t.Conv2DReshapeBatchNormReLUQuantize(), t.Conv2DReshapeBatchNormActivationQuantize(),
                     t.Conv2DBatchNormReLUQuantize(), t.Conv2DBatchNormActivationQuantize(),
                     t.Conv2DReshapeBatchNormQuantize(), t.Conv2DBatchNormQuantize(),
                     t.ConcatTransform6Inputs(), t.ConcatTransform5Inputs(), t.ConcatTransform4Inputs(),
                     t.ConcatTransform3Inputs(), t.ConcatTransform(), t.DenseBatchNormQuantize(),
                     t.DenseBatchNormReLUQuantize(), t.DenseBatchNormActivationQuantize(),
                     WeightedReLUQuantize(), AddReLUQuantize(), AddReluActivationQuantize()]
            return m["model_transformer"].ModelTransformer(model, steps, set(layer_quantize_map),
                                                           layer_quantize_map).transform()

    return Layout()


def _per_tensor_config(m: dict[str, Any], layer: Any, weight_quantizer: Any = None) -> Any:
    """tfmot's own per-tensor config (what its ``disable_per_axis`` registry gives), so a saved
    model reloads with one scale per kernel; ``weight_quantizer`` adds pruning or clustering."""
    config = m["registry"].Default8BitQuantizeConfig([KERNEL_ATTR[type(layer).__name__]], ["activation"], False)
    if weight_quantizer is not None:
        config.weight_quantizer = weight_quantizer
    return config


def per_tensor_layers(model: Any, kinds: tuple[str, ...] = tuple(KERNEL_ATTR)) -> frozenset[str]:
    """The layers of ``kinds`` that can take one weight scale: those no BatchNorm follows. (The
    converter folds a BatchNorm's per-channel factor into the kernel, which a per-tensor
    scale cannot carry: it then leaves the convolution in float.)"""
    out = set()
    for layer in model.layers:
        if type(layer).__name__ in kinds:
            after = {type(n.outbound_layer).__name__ for n in layer.outbound_nodes}
            if not any("BatchNormalization" in kind for kind in after):
                out.add(layer.name)
    return frozenset(out)


def cluster_preserving_scheme(preserve_sparsity: bool, per_tensor: frozenset[str] = frozenset()) -> Any:
    """tfmot's cluster-preserving (CQAT, PCQAT with ``preserve_sparsity``) scheme, with one
    weight scale for the Conv2D layers named in ``per_tensor``, and the ReLU fix."""
    from edgeqat.tf_compat import tfmot

    m = _tfmot()
    base = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme

    class Registry(m["cpr"].Default8bitClusterPreserveQuantizeRegistry):
        def get_quantize_config(self, layer: Any) -> Any:
            if layer.name in per_tensor:
                # tfmot never preserves clusters in depthwise kernels (it does not cluster them)
                keep = type(layer).__name__ != "DepthwiseConv2D"
                return _per_tensor_config(m, layer, m["cpr"].ClusterPreserveDefault8BitWeightsQuantizer(preserve_sparsity)
                                          if keep else None)
            return super().get_quantize_config(layer)

    class Scheme(base):
        def get_layout_transformer(self) -> Any:
            return _layout_transform(m)

        def get_quantize_registry(self) -> Any:
            return Registry(self.preserve_sparsity)

    return Scheme(preserve_sparsity=preserve_sparsity)


def plain_scheme(per_tensor: frozenset[str] = frozenset()) -> Any:
    """The default 8-bit scheme with one weight scale for the layers in ``per_tensor`` and the
    ReLU fix: per-tensor QAT, and the wrapping a trained CQAT model's weights move into (the
    same layout and scales as :func:`cluster_preserving_scheme`, minus the clustering
    variables), so it saves and reloads like any QAT model."""
    from edgeqat.tf_compat import tfmot_8bit

    m = _tfmot()

    class Registry(m["registry"].Default8BitQuantizeRegistry):
        def get_quantize_config(self, layer: Any) -> Any:
            if layer.name in per_tensor:
                return _per_tensor_config(m, layer)
            return super().get_quantize_config(layer)

    class Scheme(tfmot_8bit.default_8bit_quantize_scheme.Default8BitQuantizeScheme):
        def get_layout_transformer(self) -> Any:
            return _layout_transform(m)

        def get_quantize_registry(self) -> Any:
            return Registry()

    return Scheme()


def prune_preserving_scheme(per_tensor: frozenset[str]) -> Any:
    """tfmot's pruning-preserving (PQAT) scheme with one weight scale for the layers in
    ``per_tensor`` (its zeros kept by the same mask) and the ReLU fix."""
    from edgeqat.tf_compat import tfmot

    m = _tfmot()
    pp = m["ppr"]

    class Registry(pp.Default8bitPrunePreserveQuantizeRegistry):
        def get_quantize_config(self, layer: Any) -> Any:
            if layer.name in per_tensor:
                # tfmot keeps no pruning mask on depthwise kernels (it does not prune them)
                keep = type(layer).__name__ != "DepthwiseConv2D"
                return _per_tensor_config(m, layer, pp.PrunePreserveDefault8BitWeightsQuantizer() if keep else None)
            return super().get_quantize_config(layer)

    class Scheme(tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme):
        def get_layout_transformer(self) -> Any:
            return _layout_transform(m)

        def get_quantize_registry(self) -> Any:
            return Registry()

    return Scheme()


def per_tensor_model(model: Any) -> tuple[Any, frozenset[str]]:
    """(``model`` with its BatchNorms folded, the layers to quantize with one weight scale):
    what every QAT recipe wraps when ``convert.per_channel`` is false."""
    from edgeqat.models.batchnorm import fold_batchnorm
    from edgeqat.tf_compat import keras

    # A fresh copy: layers reused across models (tfmot's strip_pruning keeps them) have more
    # than one inbound node, and a BatchNorm is folded only where its graph is unambiguous.
    fresh = keras.models.clone_model(model)
    fresh.set_weights(model.get_weights())
    folded, _ = fold_batchnorm(fresh)
    return folded, per_tensor_layers(folded)


@contextlib.contextmanager
def centroids_per_tensor(layer_names: frozenset[str]) -> Iterator[None]:
    """While quantize-wrapping: the kernels of these Conv2D layers keep one set of centroids
    for the whole tensor (tfmot's ``get_centroids`` would guess per channel; it is looked up
    at call time, so replacing it here for the duration is enough)."""
    from edgeqat.tf_compat import tf

    cpr = _tfmot()["cpr"]
    guess = cpr.get_centroids

    def get_centroids(layer: Any, weight: Any, data_format: Any) -> Any:
        if getattr(layer.layer, "name", None) in layer_names:
            centroids, index = cpr.get_unique(weight)
            return centroids, tf.size(centroids), index, False
        return guess(layer, weight, data_format)

    cpr.get_centroids = get_centroids
    try:
        yield
    finally:
        cpr.get_centroids = guess
