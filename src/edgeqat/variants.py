"""The variants a run can make, the named sets ``convert.variants`` accepts, and which
training stages each variant needs.

``convert.variants`` is a list of variant names or a named set: ``quick`` (the first answer:
FP32 against post-training int8 against QAT int8, one QAT fine-tune and nothing else) or
``all``. A training stage builds only the models of the requested variants; for each model it
does not build it writes a marker in the file's place (:mod:`edgeqat.models.absent`), so DVC
and Kubeflow still find every output they declared, and the reason travels with it.

A variant may also be impossible for the model at hand: the QAT family rewrites Keras layers,
and a Keras 3 ``model.export()`` SavedModel has none. Those variants are then marked
"not built" with the reason, and :func:`stand_in` names the variant that takes the place of a
missing one where a single variant is needed (the headline, the validated, the registered).
"""

from __future__ import annotations

from typing import Any, Iterable

VARIANTS = ("fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "ptq_int16x8", "qat_int8", "mixed",
            "pqat_int8", "cqat_int8", "pcqat_int8", "channel_pruned_qat_int8")

# Named sets for convert.variants. quick: what one QAT fine-tune gives, beside its references.
SETS: dict[str, tuple[str, ...]] = {"quick": ("fp32", "ptq_int8", "qat_int8"), "all": VARIANTS}

# The training stages whose models a variant converts (absent: converted from the FP32 model).
# PCQAT clusters the model the prune stage pruned, so it needs both.
NEEDS: dict[str, tuple[str, ...]] = {
    "qat_int8": ("qat",), "mixed": ("qat",),
    "pqat_int8": ("prune",), "channel_pruned_qat_int8": ("prune",),
    "cqat_int8": ("cluster",), "pcqat_int8": ("prune", "cluster"),
}
# What stands in for a QAT-family variant that cannot be built: the same deployment (full-integer int8).
STAND_IN = "ptq_int8"


def expand(value: Any) -> Any:
    """A set name -> its variants (in pipeline order); anything else is returned as it is."""
    if isinstance(value, str) and value in SETS:
        return list(SETS[value])
    return value


def wanted(stage: str, variants: Iterable[str] | None) -> set[str]:
    """The requested variants that need ``stage``'s models (None: every variant)."""
    names = VARIANTS if variants is None else tuple(expand(variants))
    return {v for v in names if stage in NEEDS.get(v, ())}


def stand_in(name: str, card: dict[str, Any]) -> str:
    """``name`` when the model card has it; else, when the card says why it could not be built,
    the variant that takes its place. Anything else is for the caller to refuse."""
    converted, missing = card.get("variants", {}), card.get("not_built", {})
    if name in converted or name not in missing or STAND_IN not in converted:
        return name
    return STAND_IN
