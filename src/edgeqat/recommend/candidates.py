"""The compression strategies the recommender can try, and how each becomes a .tflite.

A candidate is either already on disk (a variant the convert stage wrote: free) or made on
demand from the FP32 model (magnitude pruning + PQAT at another sparsity, channel pruning
at another fraction, another I/O type: a fine-tune and/or a conversion). Before anything
is made, each candidate says what it can be known to be without making it -- integer-only
or not, and bounds on its size -- so the search can rule it out for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgeqat.config import PruneConfig
from edgeqat.io import CARD_NAME, log, read_json, variant_file
from edgeqat.catalog.variants import describe


@dataclass
class Candidate:
    name: str
    description: str
    cost: str  # "ready" (on disk) | "convert" | "train"
    integer_only: Optional[bool]  # known before making it (None: only after)
    size_bounds: tuple[Optional[int], Optional[int]] = (None, None)  # (optimistic, pessimistic) bytes, if known
    path: Optional[Path] = None
    make: Optional[Callable[[], Path]] = field(default=None, repr=False)

    def materialize(self) -> Path:
        if self.path is None:
            assert self.make is not None
            self.path = self.make()
        return self.path


@dataclass
class Sources:
    """The pipeline's outputs a search starts from."""

    prepared: Path
    tflite_dir: Path
    fp32_model: Path
    qat_model: Optional[Path]
    workdir: Path
    prune: PruneConfig
    per_channel: bool = True  # convert.per_channel: the weight scales of the models it makes
    trust_code: bool = False  # train.trust_model_code: whether the model files read may run code when loaded


def existing(src: Sources) -> list[Candidate]:
    card = read_json(src.tflite_dir / CARD_NAME)
    out = []
    for name, v in card["variants"].items():
        out.append(Candidate(name, describe(name), "ready", bool(v["integer_only"]),
                             (int(v["size_bytes"]), int(v["size_bytes"])), path=variant_file(src.tflite_dir, card, name)))
    return out


def _convert_qat_model(model: Any, src: Sources, out: Path, io_dtype: str = "int8") -> Path:
    from edgeqat.io import atomic_path
    from edgeqat.quantization.converter import convert_variant

    blob = convert_variant("qat_int8", None, model, None, io_dtype, per_channel=src.per_channel)
    with atomic_path(out, suffix=".tflite") as tmp:
        tmp.write_bytes(blob)
    return out


def generated(src: Sources, sparsities: list[float], fractions: list[float], ready: dict[str, Candidate]) -> list[Candidate]:
    """PQAT at each sparsity, channel pruning at each fraction, both combined, and QAT with uint8 I/O."""
    qat = ready.get("qat_int8")
    qat_size = qat.size_bounds[0] if qat else None
    out: list[Candidate] = []
    data_box: dict[str, Any] = {}

    def data():
        from edgeqat.compression.recipes import PruneData

        if "d" not in data_box:
            data_box["d"] = PruneData(src.prepared, src.prune.batch_size, src.prune.seed)
        return data_box["d"]

    existing_sparsity = src.prune.target_sparsity if "pqat_int8" in ready else None
    for s in sparsities:
        if existing_sparsity is not None and abs(s - existing_sparsity) < 1e-9:
            continue
        cfg = src.prune.model_copy(update={"target_sparsity": s, "m_by_n": False})

        def make_pqat(cfg=cfg, s=s) -> Path:
            from edgeqat.compression.recipes import train_pqat

            model, _, _ = train_pqat(cfg, src.fp32_model, data(), per_channel=src.per_channel, trust_code=src.trust_code)
            return _convert_qat_model(model, src, src.workdir / f"pqat_{int(s * 100)}.tflite")

        # Pruning zeroes weights but the flatbuffer still stores them: raw size == plain QAT.
        out.append(Candidate(f"pqat_int8@{s:g}", f"QAT int8 with {s:.0%} magnitude pruning (PQAT)", "train", True,
                             (qat_size, qat_size), make=make_pqat))
    existing_fraction = src.prune.channel_fraction if "channel_pruned_qat_int8" in ready else None
    for f in fractions:
        if existing_fraction is not None and abs(f - existing_fraction) < 1e-9:
            continue
        cfg = src.prune.model_copy(update={"channel_fraction": f})

        def make_channel(cfg=cfg, f=f) -> Path:
            from edgeqat.compression.recipes import train_channel_pruned

            model, _ = train_channel_pruned(cfg, src.fp32_model, data(), src.per_channel, src.trust_code)
            return _convert_qat_model(model, src, src.workdir / f"channel_{int(f * 100)}.tflite")

        # Inner convolutions lose f of their inputs and outputs: weights shrink by up to (1-f)^2.
        bounds = (int(qat_size * (1 - f) ** 2), qat_size) if qat_size else (None, None)
        out.append(Candidate(f"channel_pruned_qat_int8@{f:g}", f"QAT int8 of a model with {f:.0%} of its filters pruned",
                             "train", True, bounds, make=make_channel))
    # Combined: channel pruning, then magnitude pruning + PQAT of the narrower model, at the
    # smallest sparsity (zeros shrink the compressed size only: the raw size is the narrow one's).
    s_min = min((s for s in sparsities if s > 0), default=None)
    for f in fractions if s_min is not None else []:
        cfg = src.prune.model_copy(update={"channel_fraction": f, "target_sparsity": s_min, "m_by_n": False})

        def make_combo(cfg=cfg, f=f, s=s_min) -> Path:
            from edgeqat.models.io import save_model
            from edgeqat.compression.recipes import train_narrow, train_pqat

            narrow, _ = train_narrow(cfg, src.fp32_model, data(), src.trust_code)
            narrow_path = save_model(narrow, src.workdir / f"narrow_{int(f * 100)}.keras")
            model, _, _ = train_pqat(cfg, narrow_path, data(), per_channel=src.per_channel, trust_code=src.trust_code)
            return _convert_qat_model(model, src, src.workdir / f"channel_{int(f * 100)}_pqat_{int(s * 100)}.tflite")

        bounds = (int(qat_size * (1 - f) ** 2), qat_size) if qat_size else (None, None)
        out.append(Candidate(f"channel_pruned+pqat@{f:g}/{s_min:g}",
                             f"QAT int8 of a model with {f:.0%} of its filters pruned and then {s_min:.0%} of its weights (PQAT)",
                             "train", True, bounds, make=make_combo))
    if src.qat_model is not None and qat is not None:
        def make_uint8() -> Path:
            from edgeqat.models.io import load_model

            log("recommend: converting the QAT model with uint8 input/output")
            qat_model = load_model(src.qat_model, quantized=True, trust_code=src.trust_code)
            return _convert_qat_model(qat_model, src, src.workdir / "qat_uint8io.tflite", "uint8")

        out.append(Candidate("qat_int8@uint8io", "QAT int8 with uint8 input/output", "convert", True,
                             (qat_size, qat_size), make=make_uint8))
    return out
