"""Typed parameters: one model per ``params.yaml`` section, named after its stage.

Every section forbids unknown keys, and every validation error is reported with the
dotted key at fault (``train.epochs``), before any work starts.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeqat.catalog import datasources, variants as variant_table
from edgeqat.errors import ConfigError

# Far beyond what early stopping lets a small edge model use; a typo (3000 for 30) is caught
# before hours of training rather than after.
MAX_EPOCHS = 1000


class _Section(BaseModel):
    # strict: YAML `true` or "3" is not an epoch count (ints still fill float fields).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PrepareConfig(_Section):
    source: str = "digits"  # a name in edgeqat.catalog.datasources.SOURCES
    # Always present (default data/raw) so `dvc exp run -S prepare.path=...` can set it.
    path: str = "data/raw"
    image_size: int = Field(16, ge=8, le=1024)
    channels: Literal[1, 3] = 1
    # raw: pixels 0..255 as floats, for a model that rescales inside (a Rescaling layer)
    normalize: Literal["zero_one", "minus_one_one", "raw"] = "zero_one"
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    # auto: a source's own test files (IDX t10k-*, a folder's test/) are the test split;
    # pooled: every file is pooled and re-split by test_fraction
    test_split: Literal["auto", "pooled"] = "auto"
    calibration_size: int = Field(200, ge=1)
    shard_size: int = Field(1024, ge=1)
    seed: int = Field(42, ge=0)
    # source folder: read symlinked class folders and links pointing outside prepare.path
    # (refused by default: a link can pull in any file the user can read).
    follow_symlinks: bool = False
    # source folder: what transparent pixels (PNG/GIF/WebP alpha) are composited onto
    alpha_background: Literal["white", "black"] = "white"

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        return datasources.check_name(v)

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
    # Load model files that carry code (Lambda layers, custom classes): they run it on load.
    # Read by every stage that loads a model (the CLI applies it to the whole run).
    trust_model_code: bool = False
    epochs: int = Field(30, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-3, gt=0, lt=1)
    early_stopping_patience: int = Field(5, ge=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    shuffle_buffer: int = Field(2048, ge=1)
    seed: int = Field(42, ge=0)


class QatConfig(_Section):
    epochs: int = Field(2, ge=1, le=MAX_EPOCHS)
    learning_rate: float = Field(1e-4, gt=0, lt=1)
    batch_size: int = Field(64, ge=1)
    # Optional on-site data to fine-tune on (any prepare source); null = the train split.
    finetune_source: Optional[str] = None
    finetune_path: Optional[str] = None
    seed: int = Field(42, ge=0)
    # Mixed precision (the `mixed` variant): layer-name globs, or @first / @last, kept float.
    keep_float: list[str] = Field(default_factory=lambda: ["@last"])
    # Pick the fewest layers to keep float (most quantization-sensitive first) so the
    # mixed model's val accuracy is within max_accuracy_drop of FP32.
    auto_keep_float: bool = False
    max_accuracy_drop: float = Field(0.01, ge=0, lt=1)

    @field_validator("finetune_source")
    @classmethod
    def _known_source(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else datasources.check_name(v)

    @model_validator(mode="after")
    def _source_needs_path(self) -> "QatConfig":
        if self.finetune_source is not None and datasources.needs_path(self.finetune_source) and not self.finetune_path:
            raise ValueError(f"finetune_source {self.finetune_source!r} needs finetune_path")
        return self


class PruneConfig(_Section):
    # Magnitude pruning (polynomial schedule) then pruning-preserving QAT -> pqat_int8.
    target_sparsity: float = 0.5
    # model: target_sparsity of all the model's kernel weights end up zero (tfmot cannot prune
    # depthwise kernels, so the layers it does prune go a little further); layer: every layer
    # tfmot prunes reaches target_sparsity (tfmot's own meaning).
    sparsity_scope: Literal["model", "layer"] = "model"
    m_by_n: bool = False  # 2:4 structured sparsity instead of the target_sparsity schedule
    epochs: int = Field(2, ge=1, le=MAX_EPOCHS)  # pruning fine-tune epochs
    pqat_epochs: int = Field(1, ge=1, le=MAX_EPOCHS)
    # Structured channel pruning -> channel_pruned_qat_int8.
    channel_fraction: float = Field(0.3, ge=0, lt=1)
    channel_epochs: int = Field(2, ge=1, le=MAX_EPOCHS)  # fine-tune of the narrower FP32 model
    # Weight of the FP32 model's soft labels in that fine-tune (knowledge distillation); 0: labels only.
    channel_distillation: float = Field(0.7, ge=0, le=1)
    qat_epochs: int = Field(1, ge=1, le=MAX_EPOCHS)
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    qat_learning_rate: float = Field(1e-4, gt=0, lt=1)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(42, ge=0)

    @field_validator("target_sparsity")
    @classmethod
    def _sparsity_is_a_fraction(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError("must be in [0, 1): the fraction of weights pruned to zero")
        return v


class ClusterConfig(_Section):
    """Weight clustering -> cluster-preserving QAT: of the FP32 model (cqat_int8) and, keeping
    its zeros, of the prune stage's magnitude-pruned model (pcqat_int8)."""

    # Centroids per Conv2D/Dense kernel (per output channel with per_channel): at most this many
    # distinct weights. More than 256 cannot show in int8.
    number_of_clusters: int = Field(16, ge=2, le=256)
    # tfmot's CentroidInitialization: kmeans_plus_plus (its default), density_based, linear, random
    centroid_init: Literal["kmeans_plus_plus", "density_based", "linear", "random"] = "kmeans_plus_plus"
    per_channel: bool = False  # Conv2D kernels: number_of_clusters per output channel (tfmot's cluster_per_channel)
    epochs: int = Field(3, ge=1, le=MAX_EPOCHS)  # clustering fine-tune
    qat_epochs: int = Field(2, ge=1, le=MAX_EPOCHS)  # cluster-preserving QAT
    # Weight of the FP32 model's soft labels in both fine-tunes (0: labels only): 16 shared
    # values per folded kernel cost accuracy that the teacher helps win back.
    distillation: float = Field(0.7, ge=0, le=1)
    learning_rate: float = Field(1e-4, gt=0, lt=1)
    qat_learning_rate: float = Field(1e-4, gt=0, lt=1)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(42, ge=0)


# A name in edgeqat.catalog.variants.REGISTRY (an unknown one is refused naming the known ones).
VariantName = Annotated[str, AfterValidator(variant_table.check_name)]


def per_tensor_refusal(variants: list[str]) -> str | None:
    """Why ``convert.per_channel: false`` cannot be honoured for these variants (None: it can)."""
    known = variant_table.REGISTRY
    bad = [v for v in variants if v in known and known[v].not_per_tensor]
    if not bad:
        return None
    why = "; ".join(f"{v}: {known[v].not_per_tensor}" for v in bad)
    return (f"convert.per_channel: false cannot be honoured for {bad} in convert.variants ({why}); remove them "
            "from convert.variants or set convert.per_channel: true")


class ConvertConfig(_Section):
    io_dtype: Literal["int8", "uint8", "float32"] = "int8"
    # The variants this run makes, or a named set (edgeqat.catalog.variants.sets): quick | all. Stages
    # whose models no requested variant needs do no work (qat, prune, cluster).
    variants: list[VariantName] = Field(default_factory=lambda: list(variant_table.names()), min_length=1)
    # Per-channel weight scales (false: one scale per tensor, for older accelerators). Read by
    # every stage that makes a QAT model too: QAT learns the scales the file stores.
    per_channel: bool = True

    @field_validator("variants")
    @classmethod
    def _each_once(cls, v: list[str]) -> list[str]:
        twice = sorted({x for x in v if v.count(x) > 1})
        if twice:
            raise ValueError(f"lists {', '.join(map(repr, twice))} more than once (each variant is converted once)")
        return v

    @field_validator("variants", mode="before")
    @classmethod
    def _named_set(cls, v: Any) -> Any:
        named = variant_table.sets()
        if isinstance(v, str) and v not in named:
            raise ValueError(f"expected a list of variants or one of the sets {', '.join(named)}")
        return variant_table.expand(v)


class EvaluateConfig(_Section):
    num_threads: int = Field(1, ge=1)
    latency_runs: int = Field(200, ge=1)
    warmup_runs: int = Field(10, ge=0)
    # The variant every other one is compared with (size ratio, accuracy delta).
    reference: str = "fp32"
    headline: str = "qat_int8"


# A device list may name this: every shipped profile (edgeqat.devices.profiles.shipped_devices
# resolves it when the params are loaded; config.py may not read device data).
SHIPPED = "shipped"


class ValidateConfig(_Section):
    """Device-emulated validation: the registered variant on every listed device profile."""

    model: str = "qat_int8"  # the variant the pipeline registers; its verdicts gate the registry
    variants: list[str] = []  # more variants to validate (reported, never gating)
    devices: list[str] = Field(default_factory=lambda: [SHIPPED], min_length=1)
    # Any of these failing fails the gate. rpi4 alone by default: the default model passes it on every
    # README data shape, while cortex_m7 fails from 28x28 up (docs/devices.md, bench/default_gate.py).
    required_devices: list[str] = ["rpi4"]
    profiles_dir: Optional[str] = None  # a folder of your own device profile YAMLs
    max_accuracy_drop: float = Field(0.02, ge=0, le=1)  # device accuracy vs the FP32 Keras model
    latency_runs: int = Field(50, ge=1)
    emulate: bool = True  # run ARM Linux profiles on aarch64 LiteRT under QEMU where available
    emulate_samples: int = Field(16, ge=1)  # images the emulated aarch64 run and a measured device compare with host LiteRT
    # An estimate extrapolated far outside the models it was fitted on may still fail a device on
    # latency (docs/devices.md says why that is the default); false: such a verdict says "not gated".
    gate_on_extrapolated: bool = True
    # Images TFLM runs per microcontroller profile; its outputs must equal LiteRT's bit for bit
    # there, and accuracy on the whole split comes from LiteRT once per model.
    parity_samples: int = Field(256, ge=1)

    @field_validator("devices", mode="before")
    @classmethod
    def _shipped_is_a_list(cls, v: Any) -> Any:
        return [v] if v == SHIPPED else v

    @model_validator(mode="after")
    def _required_are_validated(self) -> "ValidateConfig":
        if SHIPPED in self.devices:
            return self  # checked once the names are resolved (edgeqat.devices.profiles)
        missing = [d for d in self.required_devices if d not in self.devices]
        if missing:
            raise ValueError(f"validate.required_devices: {missing} not in validate.devices {self.devices}")
        return self


class RecommendConfig(_Section):
    """Per-device strategy search (edgeqat recommend; the recommend stage when enabled)."""

    enabled: bool = False
    devices: list[str] = ["cortex_m4", "coral_edgetpu", "rpi4"]
    budget_accuracy_drop: float = Field(0.02, ge=0, le=1)  # vs the FP32 model, on the validation split (the search's)
    max_minutes: float = Field(20.0, gt=0)  # bound on the whole search (fine-tunes included)
    sparsities: list[float] = [0.5, 0.75]  # PQAT candidates (the prune stage's own sparsity is reused)
    channel_fractions: list[float] = [0.3, 0.5, 0.7]  # channel-pruning candidates
    latency_runs: int = Field(20, ge=1)

    @field_validator("sparsities", "channel_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not 0 <= x < 1]
        if bad:
            raise ValueError(f"values must be in [0, 1), got {bad}")
        return v


class TrackConfig(_Section):
    experiment: str = Field("edgeqat", min_length=1)
    log_models: bool = True


class RegisterConfig(_Section):
    """The MLflow model registry: which variant is registered, and the promotion gates."""

    model_name: str = Field("edgeqat-classifier", min_length=1)
    variant: str = "qat_int8"
    experiment: str = Field("edgeqat-registry", min_length=1)  # the runs holding registered models
    auto_promote: bool = False
    # Compared with the champion's: higher accuracy, or lower size/latency, is better.
    promote_metric: Literal["accuracy", "size_bytes", "gzip_bytes", "latency_p50_ms"] = "accuracy"
    min_accuracy: float = Field(0.0, ge=0, le=1)
    # Gate: the registered variant's test accuracy must beat the test split's majority-class rate
    # by this much (absolute), so a model that learned nothing is never registered; 0: no check.
    chance_margin: float = Field(0.1, ge=0, le=1)
    max_accuracy_drop: float = Field(0.02, ge=0, le=1)  # vs the fp32 reference, in absolute accuracy
    max_size_bytes: Optional[int] = Field(None, ge=1)
    # null = validate.required_devices (as recorded in summary.json); [] = no device gate
    required_devices: Optional[list[str]] = None
    deploy_dir: str = "deploy"  # where `edgeqat webhook serve` exports each accepted champion

    @field_validator("model_name")
    @classmethod
    def _mlflow_accepts_it(cls, v: str) -> str:
        # MLflow's own rule, checked here rather than after the whole pipeline has run
        if "/" in v or ":" in v or v.strip() in (".", "") or v.startswith("..") or v != v.strip():
            raise ValueError("MLflow refuses a model name with '/' or ':', one starting with '..', or with "
                             "spaces around it")
        return v


# pydantic warns that the `register` section shadows ABCMeta.register (a class method of the
# model's metaclass); instances still read the field, which is all edgeqat uses.
warnings.filterwarnings("ignore", message='Field name "register" in "Params" shadows', category=UserWarning)
# Likewise `validate` shadows BaseModel.validate (deprecated in pydantic 2); edgeqat never calls it.
warnings.filterwarnings("ignore", message='Field name "validate" in "Params" shadows', category=UserWarning)


class Params(_Section):
    prepare: PrepareConfig = PrepareConfig()
    train: TrainConfig = TrainConfig()
    qat: QatConfig = QatConfig()
    prune: PruneConfig = PruneConfig()
    cluster: ClusterConfig = ClusterConfig()
    convert: ConvertConfig = ConvertConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    validate: ValidateConfig = ValidateConfig()
    recommend: RecommendConfig = RecommendConfig()
    track: TrackConfig = TrackConfig()
    register: RegisterConfig = RegisterConfig()

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
        for name in [self.validate.model, *self.validate.variants]:
            if name not in self.convert.variants:
                raise ValueError(f"validate: variant {name!r} is not in convert.variants {self.convert.variants}")
        if self.register.variant not in self.convert.variants:
            raise ValueError(
                f"register.variant: variant {self.register.variant!r} is not in convert.variants {self.convert.variants}"
            )
        # Checked here, with the whole file, not in ConvertConfig: a stage given convert.per_channel
        # alone (qat, prune, cluster on Kubeflow) fills the rest of the section with defaults.
        refusal = None if self.convert.per_channel else per_tensor_refusal(self.convert.variants)
        if refusal:
            raise ValueError(refusal)
        if self.register.variant != self.validate.model:
            # The registry's device gate reads validate's verdicts, which are validate.model's.
            raise ValueError(
                f"register.variant {self.register.variant!r} is not validate.model {self.validate.model!r}: the "
                "registered file must be the one validated on the devices; set both to the same variant"
            )
        return self


def describe_validation_error(err: ValidationError, source: str, what: str = "parameters") -> str:
    """A pydantic error as one line per dotted key at fault, under the file it came from."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        shown = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {msg}{shown}" if key else f"  {msg}")
    return f"{source}: invalid {what}\n" + "\n".join(lines)


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; errors name every offending dotted key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, source)) from None


# Far above any params.yaml or profile (a few hundred values), far below what an alias bomb
# (anchors of anchors, each alias repeating the one before) expands to.
MAX_YAML_VALUES = 100_000


def _scalar_key(node: yaml.Node) -> tuple[str, str] | None:
    return (node.tag, node.value) if isinstance(node, yaml.ScalarNode) else None


def _check_yaml_tree(root: yaml.Node, source: str) -> None:
    """Refuse duplicate keys (naming the key and both lines) and aliases that expand past
    :data:`MAX_YAML_VALUES` values, on the composed node graph, before anything is built:
    an alias is the same node object again, so sizes are counted once per node."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, where: str) -> int:
        key = id(node)
        if key in sizes:
            if sizes[key] < 0:
                raise ConfigError(f"{source}: {where or 'the document'} (line {node.start_mark.line + 1}) refers to "
                                  "itself through a YAML alias; refused")
            return sizes[key]
        sizes[key] = -1  # in progress: a recursive alias comes back here
        n = 1
        if isinstance(node, yaml.SequenceNode):
            n += sum(size(child, f"{where}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for k, v in node.value:
                sk = _scalar_key(k)
                name = f"{where}.{k.value}" if where and sk else (str(k.value) if sk else where)
                if sk is not None and k.tag != "tag:yaml.org,2002:merge":
                    if sk in first:
                        raise ConfigError(f"{source}: duplicate key {name!r} at line {k.start_mark.line + 1} (first at "
                                          f"line {first[sk]}); YAML keeps only the last, so one of them is refused")
                    first[sk] = k.start_mark.line + 1
                n += size(k, name) + size(v, name)
        if n > MAX_YAML_VALUES:
            raise ConfigError(f"{source}: {where or 'the document'} (line {node.start_mark.line + 1}) expands through "
                              f"YAML aliases to over {MAX_YAML_VALUES:,} values; refused (an alias bomb?)")
        sizes[key] = n
        return n

    size(root, "")


class _CheckedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that checks the composed document (:func:`_check_yaml_tree`) first."""

    source = "YAML"

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_yaml_tree(node, self.source)
        return self.construct_document(node)


def load_yaml_text(text: str, source: str) -> Any:
    """Safe YAML with no duplicate keys and bounded alias expansion; errors name ``source``."""
    loader = _CheckedLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path, what: str) -> Any:
    """The parsed YAML of ``path``; a missing file, bad YAML, a duplicate key or an alias bomb
    is a ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    return load_yaml_text(path.read_text(), str(path))


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    return parse_params(read_yaml_file(path, "parameters file"), str(path))


def set_params_text(text: str, updates: dict[str, Any], source: str = "params.yaml") -> str:
    """``text`` (a params.yaml) with each dotted key of ``updates`` set, its comments and layout
    kept (a key the file lacks is added at the top of its section). The result is checked."""
    import re

    lines = text.splitlines()
    for dotted, value in updates.items():
        section, key = dotted.split(".")
        scalar = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
        head = next((i for i, ln in enumerate(lines) if re.match(rf"{re.escape(section)}:\s*(#.*)?$", ln)), None)
        if head is None:
            lines += [f"{section}:", f"  {key}: {scalar}"]
            continue
        end = next((i for i in range(head + 1, len(lines)) if re.match(r"\S", lines[i]) and not lines[i].startswith("#")),
                   len(lines))
        for i in range(head + 1, end):
            m = re.match(rf"(\s+){re.escape(key)}:(\s*)(.*?)(\s+#.*)?$", lines[i])
            if m:
                lines[i] = f"{m.group(1)}{key}:{m.group(2) or ' '}{scalar}{m.group(4) or ''}"
                break
        else:
            lines.insert(head + 1, f"  {key}: {scalar}")
    out = "\n".join(lines) + "\n"
    parsed = load_yaml_text(out, source) or {}  # the checked loader: an alias bomb here would hang `data add`
    for dotted, value in updates.items():
        section, key = dotted.split(".")
        if (parsed.get(section) or {}).get(key) != value:
            raise ConfigError(f"{source}: could not set {dotted} to {value!r} (edit the file by hand)")
    parse_params(parsed, source)
    return out
