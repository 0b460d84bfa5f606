"""The tags a registered model version carries: one typed schema, one writer, one reader.

The register step writes them (:func:`VersionTags.to_tags`); the gates, the alias moves and
export read them back (:func:`VersionTags.from_tags`). MLflow stores every tag as a string, so
the reader is tolerant as the gates have always been: a version registered by an older
edgeqat, or with the MLflow UI's *Register model* (no tags at all), reads with the missing or
unreadable measurements as None, and the gates then say what is missing.

Tag names (unchanged since the first registry): ``variant``, ``integer_only``, ``accuracy``,
``size_bytes``, ``gzip_bytes``, ``latency_p50_ms``, ``reference``, ``reference_accuracy``,
``accuracy_drop``, ``devices``, ``required_devices``, ``device.<dev>.passed``,
``device.<dev>.reasons``, ``gates.passed``, ``gates.reasons``, ``sha256``, ``mlflow_run_id``,
``edgeqat.model_name``, and on a per-device model ``device``, ``strategy``, ``reason`` and
``accuracy_split``. Any other tag (the lineage: git, params and data hashes) is kept as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Union

Number = Union[int, float]
MAX_TAG = 4000  # cut of a free-text tag: MLflow's limit on a tag value is 5000 (8000 on newer servers)
MEASURED = ("accuracy", "size_bytes", "gzip_bytes", "latency_p50_ms")
_DEVICE = "device."
_PASSED, _REASONS = ".passed", ".reasons"


def fmt(v: Any) -> str:
    """A value as a tag string: booleans as ``true``/``false``, everything else as str()."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def joined(reasons: Any) -> str:
    """A list of reasons as one tag value."""
    return "; ".join(map(str, reasons))[:MAX_TAG]


def _number(text: str | None) -> Number | None:
    """A measurement tag's value (int when written from an int, so it writes back the same);
    None when missing or not a number."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _flag(text: str | None) -> bool | None:
    return None if text is None else text == "true"


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(d for d in text.split(",") if d)


@dataclass(frozen=True)
class DeviceVerdict:
    """One device's verdict at validation: passed, and why not (the reasons joined, as stored)."""
    passed: bool
    reasons: str | None = None

    @classmethod
    def from_validation(cls, v: Mapping[str, Any]) -> DeviceVerdict:
        """From a device validation record (``passed``, ``reasons`` list)."""
        return cls(bool(v.get("passed")), joined(v["reasons"]) if v.get("reasons") else None)


@dataclass(frozen=True)
class VersionTags:
    """What a model version measured and how it was judged. None: the tag is absent."""
    variant: str | None = None
    integer_only: bool | None = None
    accuracy: Number | None = None
    size_bytes: Number | None = None
    gzip_bytes: Number | None = None
    latency_p50_ms: Number | None = None
    reference: str | None = None
    reference_accuracy: Number | None = None
    accuracy_drop: Number | None = None
    devices: tuple[str, ...] | None = None           # every device validated
    required_devices: tuple[str, ...] | None = None  # the validate stage's own list
    verdicts: dict[str, DeviceVerdict] = field(default_factory=dict)
    gates_passed: bool | None = None
    gates_reasons: str | None = None
    sha256: str | None = None
    mlflow_run_id: str | None = None
    model_name: str | None = None                    # edgeqat.model_name
    device: str | None = None                        # per-device models: the device ...
    strategy: str | None = None                      # ... the recommended candidate ...
    reason: str | None = None                        # ... why it was chosen ...
    accuracy_split: str | None = None                # ... and the split its accuracy is from
    other: dict[str, str] = field(default_factory=dict)  # lineage and anything else, verbatim

    # --- reader ------------------------------------------------------------------------------

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> VersionTags:
        """Read a version's tag dict; never fails (missing or unreadable tags read as None)."""
        rest = dict(tags)
        verdicts: dict[str, DeviceVerdict] = {}
        for key in list(rest):
            if key.startswith(_DEVICE) and key.endswith(_PASSED) and len(key) > len(_DEVICE) + len(_PASSED):
                dev = key[len(_DEVICE):-len(_PASSED)]
                verdicts[dev] = DeviceVerdict(rest.pop(key) == "true", rest.pop(f"{_DEVICE}{dev}{_REASONS}", None))
        # reasons with no verdict beside them stay verbatim (not a schema this reader knows)
        values: dict[str, Any] = {name: rest.pop(name, None) for name in _TEXT}
        values.update({name: _number(rest.pop(name, None)) for name in _NUMBERS})
        values.update({attr: _flag(rest.pop(tag, None)) for attr, tag in _FLAGS.items()})
        values.update({name: _names(rest.pop(name, None)) for name in _LISTS})
        values.update({attr: rest.pop(tag, None) for attr, tag in _RENAMED.items()})
        return cls(**values, verdicts=verdicts, other=rest)

    def number(self, name: str) -> float | None:
        """A measurement by tag name (``accuracy``, ``size_bytes`` ...) as a float, None when absent."""
        v = getattr(self, name, None) if name in _NUMBERS else None
        return None if v is None else float(v)

    def verdict(self, device: str) -> DeviceVerdict | None:
        return self.verdicts.get(device)

    # --- writer ------------------------------------------------------------------------------

    def to_tags(self) -> dict[str, str]:
        """The tag dict MLflow stores (absent fields write no tag)."""
        tags = dict(self.other)
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("verdicts", "other") or v is None:
                continue
            tag = _FLAGS.get(f.name) or _RENAMED.get(f.name) or f.name
            tags[tag] = ",".join(v) if f.name in _LISTS else fmt(v)
        for dev, verdict in sorted(self.verdicts.items()):
            tags[f"{_DEVICE}{dev}{_PASSED}"] = fmt(verdict.passed)
            if verdict.reasons is not None:
                tags[f"{_DEVICE}{dev}{_REASONS}"] = verdict.reasons
        return tags


_NUMBERS = (*MEASURED, "reference_accuracy", "accuracy_drop")
_LISTS = ("devices", "required_devices")
_FLAGS = {"integer_only": "integer_only", "gates_passed": "gates.passed"}
_RENAMED = {"gates_reasons": "gates.reasons", "model_name": "edgeqat.model_name"}
_TEXT = ("variant", "reference", "sha256", "mlflow_run_id", "device", "strategy", "reason", "accuracy_split")


def measurements(row: Mapping[str, Any], reference: Mapping[str, Any], reference_name: str) -> dict[str, Any]:
    """The measurement fields of a version from its row of the results table, with the drop
    vs the reference model when both accuracies are known."""
    out: dict[str, Any] = {k: row[k] for k in MEASURED if row.get(k) is not None}
    if "accuracy" in reference and "accuracy" in row:
        out.update(reference=reference_name, reference_accuracy=reference["accuracy"],
                   accuracy_drop=round(float(reference["accuracy"]) - float(row["accuracy"]), 6))
    return out


def device_fields(verdicts: Mapping[str, Mapping[str, Any]], required: list[str]) -> dict[str, Any]:
    """The device fields from the validate stage's verdicts and its list of required devices."""
    return {"devices": tuple(sorted(verdicts)), "required_devices": tuple(required),
            "verdicts": {dev: DeviceVerdict.from_validation(v) for dev, v in verdicts.items()}}


def gate_outcome(reasons: list[str]) -> dict[str, Any]:
    """The gate fields: passed, and every reason it did not."""
    return {"gates_passed": not reasons, "gates_reasons": joined(reasons) if reasons else None}
