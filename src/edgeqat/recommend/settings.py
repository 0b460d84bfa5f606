"""Settings that would let a model pass a device, found from its graph before any training.

Given the converted model's figures on a device it fails (:mod:`edgeqat.devices.preflight`),
try, cheapest first, and keep the first setting of each kind that passes:

1. a smaller ``prepare.image_size`` (zoo models; only when every figure over budget shrinks
   with the pixels: flash does not);
2. a smaller ``train.alpha``, with a smaller image size if the width alone is not enough;
3. channel pruning at one of ``recommend.channel_fractions`` (what ``edgeqat recommend``
   tries as ``channel_pruned_qat_int8@<fraction>``);
4. the zoo's small model, ``train.model=dscnn``, at the widest alpha and largest size that pass.

Each candidate is built (untrained, in about a second) and judged by scaling the converted
model's figures by the ratio of the two layer-graph censuses; a candidate whose weights
cannot fit even at the best-case ratio (``(alpha'/alpha)^2``, ``(1 - fraction)^2``, the bound
the recommender uses) is ruled out without being built. A clock bounds the whole search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from edgeqat.devices.preflight import PIXEL_BOUND, figures, misses, scaled
from edgeqat.devices.runtimes.registry import runtime_for
from edgeqat.devices.profiles import DeviceProfile
from edgeqat.devices.workload import Workload

ALPHAS = (1.0, 0.75, 0.5, 0.35, 0.25)
SMALL_MODEL = "dscnn"
MIN_SIZE = {"mobilenetv2": 32}
# A suggestion must come within this fraction of every budget: its figures are estimates
# (measured against real conversions of the zoo's models: flash within 2%, arena within 4%).
MARGIN = 0.9  # Keras' MobileNetV2 needs 32x32 or more; the rest 8 (prepare.image_size's floor)


@dataclass
class Base:
    """The converted model and what it was made from."""

    size: int  # flatbuffer bytes
    work: Workload
    census: Optional[dict[str, int]]  # None: no layer graph (a SavedModel export)
    shape: tuple[int, int, int]
    classes: int
    zoo: Optional[str] = None  # train.model when the run trains a zoo model
    alpha: float = 1.0
    keras_model: Any = None  # for channel pruning
    zoo_as_is: bool = True  # False: the checked model is the zoo model channel-pruned, not as built
    vela: dict[str, dict[str, Any]] = field(default_factory=dict)  # per Ethos-U profile


@dataclass
class Search:
    base: Base
    build: Callable[[str, float, int], Any]  # (zoo model, alpha, image size) -> untrained Keras model
    census: Callable[[Any], dict[str, int]]
    channel_prune: Callable[[Any, float], Any]
    seconds: float = 45.0
    _start: float = field(default_factory=time.monotonic)
    _censuses: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.base.zoo is not None and self.base.census is not None and self.base.zoo_as_is:
            self._censuses[(self.base.zoo, self.base.alpha, self.base.shape[0])] = self.base.census

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self._start)

    def _zoo_census(self, model: str, alpha: float, size: int) -> dict[str, int]:
        key = (model, alpha, size)
        if key not in self._censuses:
            self._censuses[key] = self.census(self.build(model, alpha, size))
        return self._censuses[key]

    def judge(self, prof: DeviceProfile, other: dict[str, int]) -> dict[str, Any]:
        b = self.base
        size, work, vela = scaled(b.size, b.work, b.vela.get(prof.name), b.census, other)
        figs = figures(prof, size, work, vela)
        strict = {k: {**f, "budget": f["budget"] * MARGIN if f["budget"] else f["budget"]} for k, f in figs["figures"].items()}
        return {**figs, "misses": misses({"figures": strict})}

    def _sizes(self, model: str, below: int) -> list[int]:
        step = 8 if below > 32 else 4
        lo = MIN_SIZE.get(model, 8)
        return [s for s in range(below - step, lo - 1, -step)] or []

    def _largest_size(self, prof: DeviceProfile, model: str, alpha: float, start: int,
                      miss: dict[str, Any]) -> Optional[tuple[int, dict[str, Any]]]:
        """The largest image size below ``start`` that passes; the scan begins near where the
        pixel count alone would bring every figure under budget."""
        need = min(f["budget"] / f["value"] for f in miss.values())
        guess = start * need ** 0.5 * 1.3
        for s in self._sizes(model, start):
            if s > guess:
                continue
            if self.left() <= 0:
                return None
            j = self.judge(prof, self._zoo_census(model, alpha, s))
            if not j["misses"]:
                return s, j
            if not set(j["misses"]) <= PIXEL_BOUND:
                return None
        return None

    def _width_then_size(self, prof: DeviceProfile, model: str, alphas: list[float], flash: Optional[int],
                         size_bytes: float, ref_alpha: float, tried: list[str]) -> Optional[dict[str, Any]]:
        """The widest of ``alphas`` that passes, at the largest image size that does; ``size_bytes``:
        the model's flatbuffer bytes at ``ref_alpha`` (weights shrink at best with alpha squared)."""
        size = self.base.shape[0]
        last = None
        for a in alphas:
            best = size_bytes * (a / ref_alpha) ** 2
            if flash is not None and best > flash:
                last = f"at alpha {a:g} even at best {int(best):,} bytes > flash {flash:,}"
                continue
            if self.left() <= 0:
                tried.append(f"{model}: stopped at the time limit")
                return None
            j = self.judge(prof, self._zoo_census(model, a, size))
            if not j["misses"]:
                return {"set": _settings(model, a, None, self.base), "figures": j["figures"]}
            if set(j["misses"]) <= PIXEL_BOUND:
                found = self._largest_size(prof, model, a, size, j["misses"])
                if found is not None:
                    return {"set": _settings(model, a, found[0], self.base), "figures": found[1]["figures"]}
            last = "; ".join(f"{k} {_num(f['value'])} > {_num(f['budget'])}" for k, f in j["misses"].items())
            last = f"at alpha {a:g}: {last}"
        if last:
            tried.append(f"train.model={model} down to alpha {alphas[-1]:g} ({last})")
        return None

    def suggest(self, prof: DeviceProfile, miss: dict[str, Any], fractions: list[float]) -> dict[str, Any]:
        """Passing settings (one per kind) and what was tried without passing."""
        b, found, tried = self.base, [], []
        if b.census is None:
            tried.append("no layer graph to narrow or prune (a SavedModel export)")
            return {"settings": found, "tried": tried}
        flash = miss.get("flash", {}).get("budget") if runtime_for(prof).stores_flatbuffer else None
        if b.zoo is not None:
            if set(miss) <= PIXEL_BOUND:
                hit = self._largest_size(prof, b.zoo, b.alpha, b.shape[0], miss)
                if hit is not None:
                    found.append({"set": {"prepare.image_size": hit[0]}, "figures": hit[1]["figures"]})
                else:
                    tried.append(f"prepare.image_size down to {MIN_SIZE.get(b.zoo, 8)}")
            else:
                tried.append("a smaller prepare.image_size: " + ", ".join(sorted(set(miss) - PIXEL_BOUND))
                             + " does not shrink with the image")
            hit = self._width_then_size(prof, b.zoo, [a for a in ALPHAS if a < b.alpha], flash, b.size, b.alpha, tried)
            if hit is not None:
                found.append(hit)
        for f in sorted(fractions):
            if flash is not None and b.size * (1 - f) ** 2 > flash:
                tried.append(f"channel pruning {f:.0%}: even at best {int(b.size * (1 - f) ** 2):,} bytes > flash {flash:,}")
                continue
            if self.left() <= 0 or b.keras_model is None:
                break
            j = self.judge(prof, self.census(self.channel_prune(b.keras_model, f)))
            if not j["misses"]:
                found.append({"set": {"prune.channel_fraction": f, "validate.model": "channel_pruned_qat_int8",
                                      "register.variant": "channel_pruned_qat_int8"},
                              "figures": j["figures"], "note": f"edgeqat recommend tries it as channel_pruned_qat_int8@{f:g}"})
                break
            tried.append(f"channel pruning {f:.0%} ("
                         + "; ".join(f"{k} {_num(x['value'])} > {_num(x['budget'])}" for k, x in j["misses"].items()) + ")")
        if b.zoo is not None and b.zoo != SMALL_MODEL and self.left() > 0:
            ref = self._zoo_census(b.zoo, b.alpha, b.shape[0])
            small = self._zoo_census(SMALL_MODEL, 1.0, b.shape[0])
            size_bytes = b.size + small["stored_bytes"] - ref["stored_bytes"]
            hit = self._width_then_size(prof, SMALL_MODEL, list(ALPHAS), flash, size_bytes, 1.0, tried)
            if hit is not None:
                found.append(hit)
        if self.left() <= 0:
            tried.append(f"the search stopped at its {self.seconds:g} s limit")
        return {"settings": found, "tried": tried}


def _settings(model: str, alpha: float, size: Optional[int], base: Base) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if model != base.zoo:
        out["train.model"] = model
    if alpha != base.alpha:
        out["train.alpha"] = alpha
    if size is not None:
        out["prepare.image_size"] = size
    return out


def _num(x: float) -> str:
    return f"{x:,.1f}" if isinstance(x, float) and x < 1e4 else f"{int(x):,}"
