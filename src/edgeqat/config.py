"""Typed parameters: one model per ``params.yaml`` section, named after its stage.

Every section forbids unknown keys, and every validation error is reported with the
dotted key at fault (``train.epochs``), before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeqat.errors import ConfigError

Source = Literal["digits", "idx", "folder", "npz"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareConfig(_Section):
    source: Source = "digits"
    # Always present (default data/raw) so `dvc exp run -S prepare.path=...` can set it.
    path: str = "data/raw"
    image_size: int = Field(16, ge=8, le=1024)
    channels: Literal[1, 3] = 1
    normalize: Literal["zero_one", "minus_one_one"] = "zero_one"
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    calibration_size: int = Field(200, ge=1)
    shard_size: int = Field(1024, ge=1)
    seed: int = Field(42, ge=0)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "PrepareConfig":
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "val_fraction + test_fraction must be < 0.9 to leave data for training "
                f"(got {self.val_fraction} + {self.test_fraction})"
            )
        return self


class TrainConfig(_Section):
    model: Literal["dscnn", "mobilenetv2", "resnet"] = "dscnn"
    alpha: float = Field(1.0, gt=0, le=2.0)
    weights: Optional[str] = None
    # A user's pretrained FP32 model (.keras, .h5 or SavedModel dir): skips training.
    from_model: Optional[str] = None
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-3, gt=0, lt=1)
    early_stopping_patience: int = Field(5, ge=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    shuffle_buffer: int = Field(2048, ge=1)
    seed: int = Field(42, ge=0)


class QatConfig(_Section):
    epochs: int = Field(2, ge=1)
    learning_rate: float = Field(1e-4, gt=0, lt=1)
    batch_size: int = Field(64, ge=1)
    # Optional on-site data to fine-tune on (any prepare source); null = the train split.
    finetune_source: Optional[Source] = None
    finetune_path: Optional[str] = None
    seed: int = Field(42, ge=0)

    @model_validator(mode="after")
    def _source_needs_path(self) -> "QatConfig":
        if self.finetune_source not in (None, "digits") and not self.finetune_path:
            raise ValueError(f"finetune_source {self.finetune_source!r} needs finetune_path")
        return self


VARIANTS = ("fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "qat_int8")


class ConvertConfig(_Section):
    io_dtype: Literal["int8", "uint8", "float32"] = "int8"
    variants: list[Literal["fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "qat_int8"]] = Field(
        default_factory=lambda: list(VARIANTS), min_length=1
    )


class EvaluateConfig(_Section):
    num_threads: int = Field(1, ge=1)
    latency_runs: int = Field(200, ge=1)
    warmup_runs: int = Field(10, ge=0)
    # The variant every other one is compared with (size ratio, accuracy delta).
    reference: str = "fp32"
    headline: str = "qat_int8"


class TrackConfig(_Section):
    experiment: str = Field("edgeqat", min_length=1)
    log_models: bool = True


class Params(_Section):
    prepare: PrepareConfig = PrepareConfig()
    train: TrainConfig = TrainConfig()
    qat: QatConfig = QatConfig()
    convert: ConvertConfig = ConvertConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    track: TrackConfig = TrackConfig()

    @model_validator(mode="before")
    @classmethod
    def _empty_section_means_defaults(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: ({} if v is None else v) for k, v in raw.items()}
        return raw

    @model_validator(mode="after")
    def _evaluated_variants_are_converted(self) -> "Params":
        for key in ("reference", "headline"):
            name = getattr(self.evaluate, key)
            if name not in self.convert.variants:
                raise ValueError(
                    f"evaluate.{key}: variant {name!r} is not in convert.variants {self.convert.variants}"
                )
        return self


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        shown = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {msg}{shown}" if key else f"  {msg}")
    return f"{source}: invalid parameters\n" + "\n".join(lines)


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; errors name every offending dotted key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_params(raw, str(path))
