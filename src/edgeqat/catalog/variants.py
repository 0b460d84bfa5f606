"""The compression variants a run can make: one entry each, in pipeline order.

An entry says everything that differs per variant: what it is in words (the recommendation's
reason), the number formats of its weights and activations (from which the converter sets its
switches, :mod:`edgeqat.quantization.converter`), the model it converts (the FP32 model, or a
quantize-aware model one of the training stages makes, and the convert step's keyword for that
file), those training stages, and why it cannot be made per tensor, if it cannot. Config
validates names against :data:`REGISTRY`; the converter, the convert step, the recommendation,
evaluate and the report read it. A new variant is one entry here (or :func:`register`, from a
plugin or a test), plus the step and port that make its model if it converts a new one.

``convert.variants`` is a list of variant names or a named set: ``quick`` (the first answer:
FP32 against post-training int8 against QAT int8, one QAT fine-tune and nothing else) or
``all``. A training stage builds only the models of the requested variants; for each model it
does not build it writes a marker in the file's place (:mod:`edgeqat.models.absent`), so DVC
and Kubeflow still find every output they declared, and the reason travels with it.

A variant may also be impossible for the model at hand: the QAT family rewrites Keras layers,
and a Keras 3 ``model.export()`` SavedModel has none. Those variants are then marked
"not built" with the reason, and :func:`stand_in` names the variant that takes the place of a
missing one where a single variant is needed (the headline, the validated, the registered).

Standard library only: config imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Optional, get_args

from edgeqat.catalog import entries

Weights = Literal["float32", "float16", "int8"]
Activations = Literal["float32", "int8", "int16"]


@dataclass(frozen=True)
class Variant:
    name: str
    #: the variant in words, for the recommendation's one-sentence reason
    description: str
    #: how its weights are stored: float32 (not optimised), float16, int8
    weights: Weights = "float32"
    #: what its kernels compute in: float32 (int8 weights: dynamic-range kernels), int8 or int16
    #: (integer kernels and integer I/O, calibrated on the calib split unless the model it
    #: converts learnt its ranges in QAT)
    activations: Activations = "float32"
    #: the convert step's keyword for the quantize-aware model it converts (None: the FP32 model)
    model: Optional[str] = None
    #: the training stages whose models it needs, the last one making ``model``'s file
    needs: tuple[str, ...] = ()
    #: why ``convert.per_channel: false`` cannot be honoured for it ("": it can)
    not_per_tensor: str = ""

    def __post_init__(self) -> None:
        # A typo here would silently pick other converter switches: refuse it where it is written.
        for field, allowed in (("weights", Weights), ("activations", Activations)):
            if getattr(self, field) not in get_args(allowed):
                raise ValueError(f"variant {self.name!r}: {field} {getattr(self, field)!r} is not one of "
                                 f"{', '.join(get_args(allowed))}")
        if self.model is not None and not self.needs:
            raise ValueError(f"variant {self.name!r}: model {self.model!r} needs the training stage that makes it")

    @property
    def quantize_aware(self) -> bool:
        """It converts a quantize-wrapped model (the QAT family), which carries its own ranges."""
        return self.model is not None

    @property
    def calibrated(self) -> bool:
        """Post-training integer: the converter calibrates its activations on representative data."""
        return not self.quantize_aware and self.activations != "float32"


REGISTRY: dict[str, Variant] = {v.name: v for v in (
    Variant("fp32", "float32 (no quantization)"),
    Variant("ptq_dynamic", "dynamic-range PTQ (int8 weights, float activations)", weights="int8",
            # Measured with a DS-CNN on digits: its per-tensor file scored 0.089, its per-channel one 0.989.
            not_per_tensor="LiteRT's dynamic-range depthwise kernel computes wrong outputs from one scale"),
    Variant("ptq_float16", "float16 PTQ", weights="float16"),
    Variant("ptq_int8", "full-integer PTQ int8", weights="int8", activations="int8"),
    # Post-training only: converting a QAT model to 16x8 fails in TF 2.21 ("not yet supported
    # for op: 'DEQUANTIZE'"). Its I/O is int16 (float32 if convert.io_dtype is). Per tensor, the
    # quantizer stops with "Quantized dimension for tensor property and quantization parameters
    # do not match".
    Variant("ptq_int16x8", "PTQ with int16 activations and int8 weights", weights="int8", activations="int16",
            not_per_tensor="TF 2.21's 16x8 quantizer fails on a depthwise kernel with one scale"),
    Variant("qat_int8", "QAT int8", weights="int8", activations="int8", model="qat_model", needs=("qat",)),
    # qat.keep_float layers stay float (weights and activations), float I/O where one meets the model's.
    Variant("mixed", "mixed-precision QAT (sensitive layers float)", weights="int8", activations="int8",
            model="mixed_model", needs=("qat",)),
    Variant("pqat_int8", "QAT int8 with magnitude pruning (PQAT)", weights="int8", activations="int8",
            model="pqat_model", needs=("prune",)),
    # <= cluster.number_of_clusters weight values per channel
    Variant("cqat_int8", "QAT int8 of a weight-clustered model (CQAT)", weights="int8", activations="int8",
            model="cqat_model", needs=("cluster",)),
    # PCQAT clusters the model the prune stage pruned, so it needs both.
    Variant("pcqat_int8", "QAT int8 of a pruned and weight-clustered model (PCQAT)", weights="int8",
            activations="int8", model="pcqat_model", needs=("prune", "cluster")),
    Variant("channel_pruned_qat_int8", "QAT int8 of a channel-pruned model", weights="int8", activations="int8",
            model="channel_pruned_model", needs=("prune",)),
)}

# Named set for convert.variants beside "all": what one QAT fine-tune gives, beside its references.
QUICK = ("fp32", "ptq_int8", "qat_int8")
# What stands in for a QAT-family variant that cannot be built: the same deployment (full-integer int8).
STAND_IN = "ptq_int8"


def register(variant: Variant) -> Variant:
    """Add (or replace) a variant under its name; a new one comes last in pipeline order."""
    REGISTRY[variant.name] = variant
    return variant


def names() -> tuple[str, ...]:
    """Every variant, in pipeline order."""
    return tuple(REGISTRY)


def sets() -> dict[str, tuple[str, ...]]:
    """The named sets ``convert.variants`` accepts."""
    return {"quick": QUICK, "all": names()}


def unknown(name: str) -> str:
    return entries.unknown("variant", name, REGISTRY)


def check_name(name: str) -> str:
    """``name`` if it is a known variant (a ValueError naming the known ones if not)."""
    return entries.check_name("variant", name, REGISTRY)


def describe(name: str) -> str:
    """The variant in words (its name, for one the registry does not know)."""
    return REGISTRY[name].description if name in REGISTRY else name


def in_order(found: Iterable[str]) -> list[str]:
    """``found`` in pipeline order, names the registry does not know last, alphabetically
    (summary.json and the model card store variants with sorted keys)."""
    rank = {name: i for i, name in enumerate(REGISTRY)}
    return sorted(found, key=lambda n: (rank.get(n, len(rank)), n))


def expand(value: Any) -> Any:
    """A set name -> its variants (in pipeline order); anything else is returned as it is."""
    named = sets()
    if isinstance(value, str) and value in named:
        return list(named[value])
    return value


def wanted(stage: str, variants: Iterable[str] | None) -> set[str]:
    """The requested variants that need ``stage``'s models (None: every variant)."""
    asked = names() if variants is None else tuple(expand(variants))
    return {v for v in asked if v in REGISTRY and stage in REGISTRY[v].needs}


def stand_in(name: str, card: dict[str, Any]) -> str:
    """``name`` when the model card has it; else, when the card says why it could not be built,
    the variant that takes its place. Anything else is for the caller to refuse."""
    converted, missing = card.get("variants", {}), card.get("not_built", {})
    if name in converted or name not in missing or STAND_IN not in converted:
        return name
    return STAND_IN


def __getattr__(attr: str) -> Any:
    # VARIANTS and SETS are read from the registry on each access, so a registered variant is in them.
    if attr == "VARIANTS":
        return names()
    if attr == "SETS":
        return sets()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
