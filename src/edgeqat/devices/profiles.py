"""Target device profiles: what a device runs, what it can hold, and how fast it is.

Shipped profiles live in ``edgeqat/devices/profiles/*.yaml``; users add their own files
(``--profile FILE`` or ``validate.profiles_dir``). A profile is validated field by field,
and an error names the file and the dotted field at fault.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeqat.config import SHIPPED, describe_validation_error, read_yaml_file
from edgeqat.devices.runtimes.base import RUNTIMES, known
from edgeqat.errors import ConfigError

DeviceClass = Literal["arm_linux", "phone", "x86", "edge_tpu", "mcu", "npu", "host"]
# platform.machine() values a device of each class may report (arch check before a measurement)
CLASS_ARCH = {"arm_linux": ["aarch64", "arm64", "armv7l", "armv8l"], "phone": ["aarch64", "armv7l", "armv8l"],
              "x86": ["x86_64", "AMD64", "i686"]}


class SpeedModel(BaseModel):
    """Latency estimate = rate x (dense MACs + weighted depthwise, fully-connected and other work).

    The rate is fitted (``edgeqat.devices.speed``) on published figures measured with the
    same runtime, kernel library, dtype and thread count (``rows`` of published_latency.csv).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kernel_library: str = Field(min_length=1)
    runtime: str = Field(min_length=1)
    dtype: Literal["int8", "fp32"] = "int8"
    threads: int = Field(1, ge=1)
    rows: list[str] = Field(min_length=1)
    scale: float = Field(1.0, gt=0)  # proxy rows: multiply their latency by this (e.g. clock ratio)
    notes: str = ""


class VelaConfig(BaseModel):
    """An Arm Ethos-U NPU as Vela compiles for it (``vela --help`` lists the names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    accelerator_config: str = Field(pattern=r"^ethos-u(55|65|85)-\d+$")  # MACs per cycle, e.g. ethos-u55-128
    system_config: str = Field(min_length=1)  # a [System_Config.*] section of config_file: clocks, bandwidths
    memory_mode: str = Field(min_length=1)  # a [Memory_Mode.*] section: where the arena and weights live
    config_file: str = "Arm/vela.ini"  # Vela's own file, or a path to yours
    optimise: Literal["Performance", "Size"] = "Performance"
    max_cpu_ops: int = Field(0, ge=0)  # operators allowed to fall back to the Cortex-M CPU
    timeout_s: float = Field(300.0, gt=0)


class Connect(BaseModel):
    """How to reach a device that is really there, so edgeqat measures on it instead of
    estimating (:mod:`edgeqat.devices.runtimes.measured`). ``connect: ssh://user@host:port``
    is short for ``connect: {url: ...}``; ``connect: local`` is the machine edgeqat runs on."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(pattern=r"^(local|ssh://(?:[^@/\s:]+@)?[^@/\s:]+(?::\d{1,5})?/?)$")
    # The device's Python (a command; may carry arguments or an environment): it needs numpy and
    # ai-edge-litert or tflite-runtime. Default: python3 over SSH, this interpreter for ``local``.
    python: Optional[str] = Field(None, min_length=1)
    identity_file: Optional[str] = None  # ssh -i; otherwise ~/.ssh/config, the agent, default keys
    ssh_options: list[str] = []  # more ssh -o options, e.g. StrictHostKeyChecking=accept-new
    # ssh -F: the lab's own ssh config (aliases, jump hosts, keys) instead of ~/.ssh/config. OpenSSH
    # hands it on to a ProxyJump hop; ``ssh_options`` apply to the device only, not to the hop.
    ssh_config: Optional[str] = None
    scratch: Optional[str] = None  # parent folder of the scratch folder on the device (default $TMPDIR or /tmp)
    arch: Optional[list[str]] = None  # accepted platform.machine() values; default: the device class's
    connect_timeout_s: float = Field(10.0, gt=0)
    startup_timeout_s: float = Field(60.0, gt=0)  # the upload, the device's Python starting, the model loading
    timeout_s: float = Field(120.0, gt=0)  # for the warm-up and timed runs on the device
    warmup: int = Field(5, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v

    @property
    def local(self) -> bool:
        return self.url == "local"


class HostScaling(BaseModel):
    """x86 evidence for an x86 target: this host's measurement (the profile's threads) times
    ``ratio`` = the target's latency / this host's on the same workload, from a source you cite."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ratio: float = Field(gt=0)
    basis: str = Field(min_length=1)  # the workload and the two CPUs the ratio compares
    source: str = Field(min_length=1)  # where the ratio is published (or measured)


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    device_class: DeviceClass
    runtime: str  # a name in edgeqat.devices.runtimes.registry.RUNTIMES
    threads: int = Field(1, ge=1)
    xnnpack: bool = True
    ram_bytes: Optional[int] = Field(None, ge=1)
    flash_bytes: Optional[int] = Field(None, ge=1)
    sram_bytes: Optional[int] = Field(None, ge=1)
    int8_only: bool = False
    # "builtin": any LiteRT builtin op; "tflm": what TensorFlow Lite Micro runs; or a list of op names
    supported_ops: Union[Literal["builtin", "tflm"], list[str]] = "builtin"
    latency_budget_ms: Optional[float] = Field(None, gt=0)
    emulation: Optional[Literal["qemu-aarch64"]] = None
    qemu_cpu: str = "cortex-a72"
    # For int8 models (what edgeqat ships); none for Ethos-U, whose latency is Vela's.
    speed_model: Optional[SpeedModel] = None
    speed_model_fp32: Optional[SpeedModel] = None  # for float models, where figures exist

    vela: Optional[VelaConfig] = None  # runtime "vela": the NPU Vela compiles for
    connect: Optional[Connect] = None  # a device that is really there: latency measured on it
    host_scaling: Optional[HostScaling] = None  # x86 targets: this host's latency x a published ratio

    def speed_model_for(self, dtype: str) -> Optional[SpeedModel]:
        """The speed model fitted on figures of the model's compute dtype (``int8`` or ``fp32``)."""
        for sm in (self.speed_model, self.speed_model_fp32):
            if sm is not None and sm.dtype == dtype:
                return sm
        return None
    sources: list[str] = Field(min_length=1)
    notes: str = ""

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, v: str) -> str:
        if v not in RUNTIMES:
            raise ValueError(f"unknown runtime (known: {known()})")
        return v

    @model_validator(mode="after")
    def _runtime_needs(self) -> "DeviceProfile":
        if self.runtime == "vela" and self.vela is None:
            raise ValueError("runtime 'vela' needs a vela: block (accelerator_config, system_config, memory_mode)")
        if self.runtime != "vela" and self.speed_model is None and self.connect is None:
            raise ValueError(f"runtime {self.runtime!r} needs a speed_model (its latency is estimated from it) "
                             "or a connect: block (its latency is measured on it)")
        if self.connect is not None and self.runtime != "litert":
            raise ValueError(f"connect: measures with LiteRT on the device; runtime {self.runtime!r} cannot be measured")
        return self

    def expected_arch(self) -> list[str]:
        """platform.machine() values a connected device may report ([] = any)."""
        if self.connect is not None and self.connect.arch is not None:
            return list(self.connect.arch)
        return list(CLASS_ARCH.get(self.device_class, []))

    @field_validator("supported_ops")
    @classmethod
    def _upper(cls, v: Union[str, list[str]]) -> Union[str, list[str]]:
        return v if isinstance(v, str) else [op.strip().upper() for op in v]


def load_profile_file(path: str | Path) -> DeviceProfile:
    path = Path(path)
    try:
        st = path.stat()
        return _load_profile_cached(path, st.st_mtime_ns, st.st_size)
    except OSError:
        return _load_profile(path)  # missing: read_yaml_file names it


@lru_cache(maxsize=256)
def _load_profile_cached(path: Path, mtime_ns: int, size: int) -> DeviceProfile:
    # Every params load checks device names against the profiles: read each file once.
    return _load_profile(path)


def _load_profile(path: Path) -> DeviceProfile:
    raw = read_yaml_file(path, "device profile")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a device profile must be a mapping of fields")
    try:
        prof = DeviceProfile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, str(path), "device profile")) from None
    _check_speed_rows(prof, path)
    return prof


def data_file(name: str) -> Path:
    """A file of the shipped device data (``edgeqat/devices/data``)."""
    return Path(str(resources.files("edgeqat.devices") / "data" / name))


@lru_cache(maxsize=None)
def published_rows(path: Optional[str] = None) -> dict[str, dict[str, Any]]:
    """The rows of published_latency.csv by id: what a speed_model names (the speed model's fit
    reads them too, :mod:`edgeqat.devices.speed`)."""
    p = Path(path) if path else data_file("published_latency.csv")
    rows = {}
    with p.open(newline="") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            try:
                r["latency_ms"] = float(r["latency_ms"])
                r["threads"] = int(r["threads"])
            except (KeyError, ValueError) as err:
                raise ConfigError(f"{p}:{i}: bad latency_ms/threads ({err})") from None
            if r["id"] in rows:
                raise ConfigError(f"{p}:{i}: duplicate id {r['id']!r}")
            rows[r["id"]] = r
    return rows


def _check_speed_rows(prof: DeviceProfile, path: Path) -> None:
    """Every speed_model row must be in published_latency.csv: said now, naming the file."""
    rows = published_rows()
    for key in ("speed_model", "speed_model_fp32"):
        sm = getattr(prof, key)
        unknown = [r for r in (sm.rows if sm is not None else []) if r not in rows]
        if unknown:
            raise ConfigError(f"{path}: {key}.rows: {', '.join(map(repr, unknown))} not in published_latency.csv "
                              "(the rows the speed model is fitted on)")


def shipped_profile_files() -> list[Path]:
    folder = resources.files("edgeqat.devices") / "profiles"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith((".yaml", ".yml")))


# The order the default device list (and so every table of verdicts) has always had; a shipped
# profile not named here follows them, by name, so adding a device needs no edit here.
_SHIPPED_ORDER = ("rpi4", "rpi_zero2w", "j1900", "android_midrange", "coral_edgetpu", "cortex_m7", "cortex_m4",
                  "esp32s3", "ethos_u55_128", "ethos_u55_256", "ethos_u65_256")


@lru_cache(maxsize=1)
def shipped_devices() -> tuple[str, ...]:
    """What ``shipped`` in a device list means: every profile in ``edgeqat/devices/profiles``
    except ``host`` (this machine, measured rather than estimated)."""
    names = {p.name for p in map(load_profile_file, shipped_profile_files()) if p.device_class != "host"}
    return tuple(n for n in _SHIPPED_ORDER if n in names) + tuple(sorted(names - set(_SHIPPED_ORDER)))


def expand_devices(names: list[str] | tuple[str, ...]) -> list[str]:
    """``names`` with ``shipped`` replaced by the shipped devices (each name once, first place kept)."""
    out = [d for n in names for d in (shipped_devices() if n == SHIPPED else (n,))]
    return list(dict.fromkeys(out))


def with_shipped_devices(params: Any, source: str = "params") -> Any:
    """``params`` with ``shipped`` resolved in validate.devices and recommend.devices, and the rule
    config.py leaves for then (every required device is validated) checked."""
    v, r = params.validate, params.recommend
    if SHIPPED in v.devices:
        v = v.model_copy(update={"devices": expand_devices(v.devices)})
        missing = [d for d in v.required_devices if d not in v.devices]
        if missing:
            raise ConfigError(f"{source}: invalid parameters\n  validate: validate.required_devices: {missing} not in "
                              f"validate.devices {v.devices}")
    if SHIPPED in r.devices:
        r = r.model_copy(update={"devices": expand_devices(r.devices)})
    if v is params.validate and r is params.recommend:
        return params
    return params.model_copy(update={"validate": v, "recommend": r})


def available_profiles(extra_dir: str | Path | None = None) -> dict[str, DeviceProfile]:
    """Shipped profiles, then user files from ``extra_dir`` (a user file overrides a shipped name)."""
    files = shipped_profile_files()
    if extra_dir is not None:
        d = Path(extra_dir)
        if not d.is_dir():
            raise ConfigError(f"{d}: device profile folder not found")
        files += sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml"))
    out: dict[str, DeviceProfile] = {}
    for f in files:
        prof = load_profile_file(f)
        out[prof.name] = prof
    return out


def resolve_profiles(names: list[str], extra_files: list[str | Path] = (), extra_dir: str | Path | None = None) -> list[DeviceProfile]:
    """Profiles by name (or YAML path); an unknown name lists the valid ones."""
    known = available_profiles(extra_dir)
    for f in extra_files:
        prof = load_profile_file(f)
        known[prof.name] = prof
    picked = []
    for name in expand_devices(names):
        if name.endswith((".yaml", ".yml")) or "/" in name:
            picked.append(load_profile_file(name))
        elif name in known:
            picked.append(known[name])
        else:
            raise ConfigError(f"unknown device {name!r}; valid names: {', '.join(sorted(known))}")
    return picked


def check_device_names(params: Any, source: str = "params") -> None:
    """Every name in validate.devices and recommend.devices is a known profile: checked when
    the params are read (before hours of training), not at the validate stage. Kept out of
    the params model itself so that config.py needs no device data (and a profile edit does
    not re-run every stage that reads params)."""
    names = {"validate.devices": expand_devices(params.validate.devices),
             "recommend.devices": expand_devices(params.recommend.devices)}
    if not any(names.values()):
        return
    try:
        known = available_profiles(params.validate.profiles_dir)
    except ConfigError as err:
        raise ConfigError(f"{source}: invalid parameters\n  validate.profiles_dir: {err}") from None
    for key, devices in names.items():
        # a name with a slash or a .yaml suffix is a profile file, checked when it is read
        bad = [d for d in devices if d not in known and not (d.endswith((".yaml", ".yml")) or "/" in d)]
        if bad:
            raise ConfigError(f"{source}: invalid parameters\n  {key}: unknown device(s) {', '.join(map(repr, bad))}; "
                              f"known devices: {', '.join(sorted(known))}"
                              + ("" if params.validate.profiles_dir else " (add your own with validate.profiles_dir)"))
