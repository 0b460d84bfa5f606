"""The stage table: the one place that says what each pipeline stage is.

Per stage: the step function, the params sections it receives, and its named inputs and
outputs (workspace path, KFP artifact type, how DVC tracks it). Everything else follows
from this table: ``edgeqat stage <name>`` (adapters/cli), ``dvc.yaml`` (adapters/dvc,
generated), the KFP components and the DAG's edges (adapters/kfp: an input is wired to the
output of the same name). A new stage is a new :class:`Stage` here plus its step function.

Paths are relative to the workspace root (the repository for DVC; a scratch folder that the
KFP runner lays out the same way); :class:`Workspace` resolves each port by name. A step is
called as ``step(<first section's config>, <port.arg>=<path>, ..., <other section>=<its config>)``
(or with ``workspace=`` instead of the port keywords, for a stage marked ``workspace``) and
returns its metrics, which the stage runner writes to the stage's metrics port; a stage that
receives every section (``ALL``) gets the whole :class:`~edgeqat.config.Params` as its first
argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Mapping

ALL = "*"  # receives every params section (the whole Params)
# The run's trust decision: whether a model file may carry code that runs when it is loaded. It
# applies to every model any stage loads, so every stage depends on it (GLOBAL_KEYS); a step that
# loads models and does not receive the train section takes it as a keyword (TRUST last in its
# keys, where GLOBAL_KEYS puts it anyway, so dvc.yaml and the components keep their order).
TRUST = "train.trust_model_code"
GLOBAL_KEYS = (TRUST,)

# KFP artifact class of a port (kfp.dsl.<name>).
Kind = Literal["Dataset", "Model", "Metrics", "Artifact", "Markdown", "HTML"]
# How DVC sees an output: a cached out, a committed metrics/data file (cache: false), or not at
# all ("side": run-varying files such as timings and TensorBoard logs, kept out of dvc.lock so a
# re-run with the same inputs leaves the lock and git untouched).
Dvc = Literal["out", "metrics", "committed", "side"]


@dataclass(frozen=True)
class Port:
    """A named file or folder a stage reads or writes."""

    name: str  # unique across the table: an input is fed by the output of the same name
    path: str  # workspace path
    kind: Kind = "Artifact"
    arg: str | None = None  # the step's keyword for this path (default: the name); "" = not passed
    dvc: Dvc = "out"
    kfp: bool = True  # an artifact in the KFP pipeline (False: DVC/CLI path only)
    is_dir: bool = False
    returned: bool = False  # the stage runner writes the dict the step returns here (the step is not given it)

    @property
    def step_arg(self) -> str:
        return self.name if self.arg is None else self.arg


@dataclass(frozen=True)
class FileParam:
    """A params key that names a file or folder the stage reads: a content-tracked DVC dep
    (when set) and, on a cluster, optionally an imported KFP input that overrides it."""

    key: str  # dotted params key
    importer: str | None = None  # KFP input name fed by dsl.importer (cluster runs); overrides the key
    kind: Kind = "Artifact"


@dataclass(frozen=True)
class Resources:
    """What a cluster reserves (requests) and caps (limits) for one stage's container, in
    Kubernetes quantities, compiled into the KFP pipeline. A request is what the scheduler
    finds room for; past the memory limit the container is killed, so both leave headroom over
    the peaks measured in containers on small data (docs/kubeflow.md) for real data sets."""

    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "4Gi"
    accelerator: bool = False  # trains: takes an accelerator when the pipeline is compiled with --gpu


LIGHT = Resources(cpu_request="500m", cpu_limit="1", memory_request="1Gi", memory_limit="2Gi")  # MLflow calls
TRAINING = Resources(cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi", accelerator=True)
# recommend fine-tunes candidates only when recommend.enabled (off by default): no accelerator held for it
SEARCH = replace(TRAINING, accelerator=False)


@dataclass(frozen=True)
class Stage:
    name: str
    step: str  # "module:function", imported only when the stage runs
    sections: tuple[str, ...]  # params sections it receives; (ALL,) for the whole Params
    # Single keys of other sections it receives, each as the step keyword named after the key
    # (convert.variants -> variants=): a DVC param of the stage, a parameter of its component.
    keys: tuple[str, ...] = ()
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    file_params: tuple[FileParam, ...] = ()
    doc: str = ""
    gate: str | None = None  # "<stage>.passed": KFP runs it only when that stage passed
    cached: bool = True  # False: a side effect (MLflow) that KFP must never skip from its cache
    returns_passed: bool = False  # the step's result["passed"] is a KFP output (for a gate)
    resources: Resources = Resources()  # the container's CPU/memory (and accelerator) on a cluster
    # The step takes the stage's Workspace (``workspace=``) and reads its ports by name, rather
    # than one keyword per port; it may resolve only the ports listed here (:class:`Workspace`).
    workspace: bool = False
    run_tags: bool = False  # the step takes extra MLflow run tags (extra_tags=): the CLI's --tag, KFP's run tags
    pipeline_result: str | None = None  # the output the compiled KFP pipeline returns (else the first artifact)
    kfp_only_outputs: tuple[tuple[str, str], ...] = ()  # (name, kfp.dsl class): outputs only for the Kubeflow UI


def metrics(stage: str) -> Port:
    """The metrics the step returns, written by the stage runner (the step is not given the path)."""
    return Port(f"{stage}_metrics", f"metrics/{stage}.json", "Metrics", arg="", dvc="committed", returned=True)


def timings(stage: str) -> Port:
    """Wall times and host latency: written by the stage runner, never a DVC output."""
    return Port(f"{stage}_timings", f"logs/timings/{stage}.json", "Artifact", arg="", dvc="side")


def history(stage: str) -> Port:
    return Port(f"{stage}_history", f"plots/{stage}_history.csv", "Dataset", arg="history_path", dvc="committed")


def tensorboard(stage: str) -> Port:
    return Port(f"{stage}_tensorboard", f"logs/tensorboard/{stage}", arg="tensorboard_dir", dvc="side", kfp=False,
                is_dir=True)


PREPARED = Port("prepared", "data/prepared", "Dataset", is_dir=True)
PREFLIGHT = Port("preflight", "reports/preflight.json", arg="report_json", dvc="committed")
FP32 = Port("fp32_model", "models/fp32.keras", "Model")
QAT = Port("qat_model", "models/qat.h5", "Model")
MIXED = Port("mixed_model", "models/mixed.h5", "Model")
PQAT = Port("pqat_model", "models/pqat.h5", "Model")
PRUNED = Port("pruned_model", "models/pruned.keras", "Model")  # magnitude-pruned FP32, stripped: what PCQAT clusters
CQAT = Port("cqat_model", "models/cqat.h5", "Model")
PCQAT = Port("pcqat_model", "models/pcqat.h5", "Model")
CHANNEL = Port("channel_pruned_model", "models/channel_pruned_qat.h5", "Model")
TFLITE = Port("tflite", "models/tflite", "Model", arg="tflite_dir", is_dir=True)
EVALUATION = Port("evaluation", "reports/evaluation.json", arg="summary_json", dvc="committed")
EVALUATION_MD = Port("evaluation_report", "reports/evaluation.md", "Markdown", arg="summary_md", dvc="committed")
CONFUSION = Port("confusion", "plots/confusion.csv", "Dataset", arg="confusion_csv", dvc="committed")
PARETO = Port("pareto", "reports/pareto.png", arg="pareto_png", dvc="committed")
SUMMARY = Port("summary", "reports/summary.json", arg="summary_json", dvc="committed")
SUMMARY_MD = Port("summary_report", "reports/summary.md", "Markdown", arg="summary_md", dvc="committed")
DEVICES = Port("devices_report", "reports/devices.json", arg="devices_json", dvc="committed")
SENSITIVITY = Port("sensitivity", "reports/sensitivity.json", arg="sensitivity_json", dvc="committed")
SENSITIVITY_MD = Port("sensitivity_report", "reports/sensitivity.md", "Markdown", arg="sensitivity_md", dvc="committed")
RECOMMENDED = Port("recommended", "models/recommended", "Model", arg="models_out", is_dir=True)
RECOMMENDATION = Port("recommendation", "reports/recommendation", arg="report_dir", dvc="committed", is_dir=True)
TRACKED = Port("tracked", "reports/tracked.json", arg="", dvc="committed")
MLFLOW_RUN = Port("mlflow_run", "logs/mlflow_run.json", arg="", dvc="side")
REPORT_HTML = Port("report_html", "reports/report.html", "HTML", arg="html_out", dvc="committed")
FIGURES = Port("figures", "reports/figures", arg="figures_dir", dvc="committed", is_dir=True)
# Host latency committed with the results but never a DVC output: evaluate rewrites it only when
# a model file or the measuring settings change (edgeqat.workspace.timings.host_latency_record).
HOST_LATENCY = Port("host_latency", "reports/host_latency.json", arg="host_latency_json", dvc="side")
# The few numbers DVC's metrics views compare (dvc metrics show/diff, dvc exp show); each stage's
# detailed metrics file is committed beside it but kept out of those views.
HEADLINE = Port("headline", "metrics/headline.json", "Metrics", arg="headline_path", dvc="metrics")


def arg(port: Port, name: str) -> Port:
    """The same port under another step keyword ("" = read from the workspace, not passed)."""
    return replace(port, arg=name)


# Weight scales are decided when a model is wrapped for QAT, so every stage that makes a QAT
# model reads convert.per_channel (and re-runs when it changes), not only convert.
PER_CHANNEL = ("convert.per_channel",)

COMPUTE = ("prepare", "preflight", "train", "qat", "prune", "cluster", "convert", "evaluate", "validate", "recommend", "report")

STAGES: tuple[Stage, ...] = (
    Stage("prepare", "edgeqat.steps.prepare:prepare", ("prepare",),
          outputs=(arg(PREPARED, "out_dir"), metrics("prepare"), timings("prepare")),
          file_params=(FileParam("prepare.path", importer="raw_data", kind="Dataset"),),
          doc="Raw data -> resized, stratified, sharded train/val/test/calib splits."),
    Stage("preflight", "edgeqat.steps.preflight:preflight", ("train", "validate"),
          keys=("prune.channel_fraction", "recommend.channel_fractions"),
          inputs=(PREPARED,),
          outputs=(PREFLIGHT, metrics("preflight"), timings("preflight")),
          file_params=(FileParam("train.from_model", importer="pretrained_model", kind="Model"),
                       FileParam("validate.profiles_dir")),
          doc="Before training: the model's untrained int8 graph against every required device's budgets."),
    Stage("train", "edgeqat.steps.train:train", ("train",),
          # preflight's metrics: only to run after it (the same bytes whenever it passes)
          inputs=(PREPARED, arg(metrics("preflight"), "")),
          outputs=(arg(FP32, "model_out"), metrics("train"), history("train"), tensorboard("train"), timings("train")),
          file_params=(FileParam("train.from_model", importer="pretrained_model", kind="Model"),
                       FileParam("train.weights")),
          resources=TRAINING,
          doc="FP32 baseline, or the user's pretrained model (train.from_model)."),
    Stage("qat", "edgeqat.steps.qat:qat", ("qat",), keys=("convert.variants", *PER_CHANNEL, TRUST),
          inputs=(PREPARED, FP32),
          outputs=(arg(QAT, "model_out"), arg(MIXED, "mixed_out"), SENSITIVITY, SENSITIVITY_MD,
                   metrics("qat"), history("qat"), tensorboard("qat"), timings("qat")),
          file_params=(FileParam("qat.finetune_path"),),
          resources=TRAINING,
          doc="Quantization-aware fine-tuning of the FP32 model, plain and mixed precision."),
    Stage("prune", "edgeqat.steps.prune:prune", ("prune",), keys=("convert.variants", *PER_CHANNEL, TRUST),
          inputs=(PREPARED, FP32),
          outputs=(arg(PQAT, "pqat_out"), arg(PRUNED, "pruned_out"), arg(CHANNEL, "channel_pruned_out"),
                   metrics("prune"), history("prune"), timings("prune")),
          resources=TRAINING,
          doc="Magnitude pruning + pruning-preserving QAT, and structured channel pruning + QAT."),
    Stage("cluster", "edgeqat.steps.cluster:cluster", ("cluster",), keys=("convert.variants", *PER_CHANNEL, TRUST),
          inputs=(PREPARED, FP32, PRUNED),
          outputs=(arg(CQAT, "cqat_out"), arg(PCQAT, "pcqat_out"), metrics("cluster"), timings("cluster")),
          resources=TRAINING,
          doc="Weight clustering + cluster-preserving QAT of the FP32 model (CQAT) and of the pruned one (PCQAT)."),
    Stage("convert", "edgeqat.steps.convert:convert", ("convert",), keys=(TRUST,),
          inputs=(PREPARED, FP32, QAT, MIXED, PQAT, CQAT, PCQAT, CHANNEL),
          outputs=(arg(TFLITE, "out_dir"), metrics("convert"), timings("convert")),
          doc="Keras models -> .tflite variants and model_card.json."),
    Stage("evaluate", "edgeqat.steps.evaluate:evaluate", ("evaluate",), keys=(TRUST,),
          inputs=(PREPARED, TFLITE, FP32),
          outputs=(EVALUATION, EVALUATION_MD, CONFUSION, PARETO, metrics("evaluate"), timings("evaluate"), HOST_LATENCY),
          # the headline variant's confusion matrix, drawn by the Kubeflow UI
          kfp_only_outputs=(("headline_confusion", "ClassificationMetrics"),),
          doc="Accuracy and size of every .tflite through LiteRT (host latency in the stage's timings)."),
    Stage("validate", "edgeqat.steps.validate:validate", ("validate",), keys=(TRUST,),
          # the host latency record: only named in summary.md when it is there (no DVC dep, no KFP edge)
          inputs=(PREPARED, TFLITE, FP32, arg(EVALUATION, "evaluation_json"), replace(HOST_LATENCY, kfp=False)),
          outputs=(SUMMARY, SUMMARY_MD, DEVICES, metrics("validate"), timings("validate")),
          file_params=(FileParam("validate.profiles_dir"),),
          returns_passed=True,
          doc="The registered variant on every device profile: runs? fits? accurate? fast enough?"),
    Stage("recommend", "edgeqat.steps.recommend:recommend", ("recommend", "prune", "validate"),
          # summary: only to run after validate, as the registry sees it
          inputs=(PREPARED, TFLITE, FP32, QAT, arg(SUMMARY, "")),
          outputs=(RECOMMENDED, RECOMMENDATION, metrics("recommend"), timings("recommend")),
          keys=(*PER_CHANNEL, TRUST), resources=SEARCH,
          doc="recommend.enabled: the best model per device of recommend.devices (else a one-line report)."),
    Stage("report", "edgeqat.steps.report:report", ("evaluate", "validate", "register"),
          inputs=(SUMMARY, DEVICES, arg(history("train"), "train_history"), arg(history("qat"), "qat_history"),
                  CONFUSION, PARETO, arg(RECOMMENDATION, "recommendation_dir"), HOST_LATENCY),
          outputs=(REPORT_HTML, FIGURES, HEADLINE, timings("report")),
          file_params=(FileParam("validate.profiles_dir"),),
          doc="One self-contained page (reports/report.html), its figures, and the headline metrics."),
)

# track and register receive the whole Params and read the workspace the stages above wrote
# through their Workspace, by port name: each file either reads is one of its inputs here (a DVC
# dep, a KFP edge), and a name that is not fails (:class:`Workspace`), so neither can read a file
# DVC does not see, nor miss one whose path changed.
STAGES += (
    Stage("track", "edgeqat.steps.track:track", (ALL,),
          inputs=(*(metrics(s) for s in COMPUTE if s != "report"), *(timings(s) for s in COMPUTE),
                  history("train"), history("qat"), history("prune"), CONFUSION, PREPARED, FP32, TFLITE, RECOMMENDED,
                  RECOMMENDATION, EVALUATION, SUMMARY, SUMMARY_MD, DEVICES, SENSITIVITY, SENSITIVITY_MD, PARETO,
                  REPORT_HTML, FIGURES, HEADLINE, tensorboard("train"), tensorboard("qat")),
          outputs=(TRACKED, MLFLOW_RUN),
          workspace=True, run_tags=True, pipeline_result=MLFLOW_RUN.name, cached=False, resources=LIGHT,
          doc="Log the whole execution to MLflow: one run with params, metrics, curves, data, models, reports."),
    Stage("register", "edgeqat.steps.register:register", (ALL,),
          # the host latency the version is tagged with: run-varying side files, no DVC dep, no KFP edge
          inputs=(TRACKED, MLFLOW_RUN, TFLITE, SUMMARY, RECOMMENDED, RECOMMENDATION,
                  replace(timings("evaluate"), kfp=False), replace(HOST_LATENCY, kfp=False)),
          outputs=(Port("registered", "logs/registered.json", dvc="side"),),
          workspace=True, gate="validate.passed", cached=False, resources=LIGHT,
          doc="The run's model as a new MLflow model version (alias challenger); per-device models too."),
)


def section_keys(section: str) -> list[str]:
    model = _params_model().model_fields[section].annotation
    return [f"{section}.{k}" for k in model.model_fields]  # type: ignore[union-attr]


def stage_params(stage: Stage) -> list[str]:
    """Every key of the sections the stage receives, its single keys, then the keys every stage receives."""
    sections = list(_params_model().model_fields) if stage.sections == (ALL,) else stage.sections
    keys = [k for s in sections for k in section_keys(s)]
    keys += [k for k in stage.keys if k not in keys]
    return keys + [k for k in GLOBAL_KEYS if k not in keys]


def _params_model():
    from edgeqat.config import Params

    return Params


def stage(name: str, table: tuple[Stage, ...] | None = None) -> Stage:
    for s in (STAGES if table is None else table):
        if s.name == name:
            return s
    known = ", ".join(s.name for s in (STAGES if table is None else table))
    from edgeqat.errors import EdgeqatError

    raise EdgeqatError(f"no stage {name!r} (stages: {known})")


class UnknownPort(KeyError):
    """A port name the table (or the stage) does not have: a programming error, named in full."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Workspace:
    """Every named port of a stage table, resolved to its path under one root: the repository
    for DVC, a scratch folder the KFP runner lays out the same way. ``ws.path("summary")``.

    ``stage``: only that stage's ports resolve (what the stage runner gives a step that takes a
    Workspace), so a step cannot read a file its stage does not declare, which DVC would not see
    as a dep. ``overrides``: port name -> a path given instead of the table's (the CLI's options).
    """

    root: Path
    table: tuple[Stage, ...] | None = None  # None: edgeqat's own STAGES
    stage: Stage | None = None
    overrides: Mapping[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def ports(self) -> dict[str, Port]:
        """Name -> port: the stage's own, else every output and input of the table."""
        stages = (self.stage,) if self.stage is not None else (STAGES if self.table is None else self.table)
        found: dict[str, Port] = {}
        for s in stages:
            for p in (*s.outputs, *s.inputs):
                found.setdefault(p.name, p)
        return found

    def port(self, name: str) -> Port:
        ports = self.ports()
        if name not in ports:
            where = f"stage {self.stage.name}" if self.stage is not None else "the stage table"
            raise UnknownPort(f"no port {name!r} in {where} (ports: {', '.join(sorted(ports))})")
        return ports[name]

    def path(self, name: str) -> Path:
        port = self.port(name)
        return Path(self.overrides[name]) if self.overrides.get(name) is not None else self.root / port.path


def workspace(value: Workspace | str | Path, stage_name: str) -> Workspace:
    """A step's ``workspace=`` argument: a Workspace as given, or a folder (a direct call) laid
    out as the table says, restricted to the named stage's ports."""
    return value if isinstance(value, Workspace) else Workspace(Path(value), stage=stage(stage_name))
