"""The `edgeqat` command as a user types it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from integration.conftest import BIN

pytestmark = pytest.mark.integration


def edgeqat(*args, cwd=None, env=None):
    env = {**{k: v for k, v in os.environ.items() if k != "COLUMNS"}, **(env or {})}
    return subprocess.run([str(BIN / "edgeqat"), *args], capture_output=True, text=True, cwd=cwd, env=env)


def width(text: str) -> int:
    return max((len(line.rstrip()) for line in text.splitlines()), default=0)


def test_help_is_fast_and_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from edgeqat.adapters.cli.app import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tf_keras', 'mlflow', 'kfp'}\n"
        "print('LOADED', sorted(heavy))\n"
    )
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    # TensorFlow, MLflow and kfp load only in the commands that use them
    assert "LOADED []" in out.stdout and "stage" in out.stdout, out.stdout
    assert time.monotonic() - t < 10  # TensorFlow alone takes 4-8 s to import


def test_bad_params_exit_2_naming_the_key(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 0\n  colour: red\n")
    out = edgeqat("stage", "prepare", "--params", str(tmp_path / "params.yaml"), cwd=tmp_path)
    assert out.returncode == 2
    assert "train.epochs" in out.stderr and "train.colour: unknown key" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_data_folder_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("prepare:\n  source: folder\n  path: no/such/dir\n")
    out = edgeqat("stage", "prepare", "--params", "params.yaml", "--prepared", "prep", cwd=tmp_path)
    assert out.returncode == 2 and "no/such/dir: folder not found" in out.stderr
    assert not (tmp_path / "prep").exists()


def test_report_without_a_run_says_what_to_do(tmp_path):
    out = edgeqat("report", cwd=tmp_path)
    assert out.returncode == 2 and "run the pipeline first" in out.stderr


def test_check_params_accepts_the_shipped_file():
    from integration.conftest import REPO

    out = edgeqat("check-params", cwd=REPO)
    assert out.returncode == 0 and "ok" in out.stdout


def test_malformed_tag_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    out = edgeqat("stage", "track", "--params", "params.yaml", "--tag", "no-equals-sign", cwd=tmp_path)
    assert out.returncode == 2 and "--tag 'no-equals-sign': expected KEY=VALUE" in out.stderr


def test_version_and_shell_completion():
    from edgeqat import __version__

    assert edgeqat("--version").stdout == f"edgeqat {__version__}\n"
    assert "--install-completion" in edgeqat("--help").stdout
    # Typer detects the shell from the parent process, which under make or CI is sh (unsupported);
    # its own switch for that makes --show-completion take the shell by name instead.
    script = edgeqat("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert script.returncode == 0 and "_EDGEQAT_COMPLETE=complete_bash" in script.stdout, script.stdout + script.stderr
    words = edgeqat(env={"_EDGEQAT_COMPLETE": "complete_bash", "COMP_WORDS": "edgeqat stage conv", "COMP_CWORD": "2"})
    assert words.stdout.split() == ["convert"]


def _summary() -> dict:
    """A summary.json as the pipeline writes it: every variant, and devices with the long cells."""
    from edgeqat.catalog.variants import VARIANTS

    variants = {name: {"accuracy": 0.98 - i / 100, "accuracy_delta": -i / 100, "agreement": 0.99, "size_bytes": 545_992 - i * 40_000,
                       "size_ratio": 1 - i / 10, "gzip_bytes": 501_449 - i * 40_000, "weight_sparsity": 0.5 if "pqat" in name else 0.01,
                       "integer_only": "int" in name} for i, name in enumerate(VARIANTS)}
    skipped = {"ran": False, "why": "qemu-aarch64-static is missing: run `make arm64` as root"}
    devices = {
        "android_midrange": {"passed": True, "required": False, "runtime": "litert", "accuracy": 0.9861,
                             "latency_ms_estimate": 0.185, "latency_extrapolated": True, "model_bytes": 184_168, "reasons": []},
        "rpi_zero2w": {"passed": True, "required": True, "runtime": "litert", "accuracy": 0.9861, "latency_ms_estimate": 0.461,
                       "latency_extrapolated": True, "model_bytes": 184_168, "reasons": [], "emulation": skipped},
        "cortex_m4": {"passed": False, "required": False, "runtime": "tflm", "latency_ms_estimate": 312.0, "arena_bytes": 40_208,
                      "model_bytes": 184_168, "reasons": ["model 184,168 bytes > flash 163,840 bytes",
                                                          "arena 40,208 bytes + interpreter > RAM 49,152 bytes"]},
    }
    npu = {"measure": "vela_flash", "bytes": 152_960, "cycles": 183_232}
    storage = {name: {"rpi4": {"measure": "flatbuffer", "bytes": v["size_bytes"]},
                      **{d: npu for d in ("ethos_u55_128", "ethos_u55_256")},
                      "ethos_u65_256": {**npu, "measure": "vela_dram"}} for name, v in variants.items()}
    return {"reference": "fp32", "headline": "qat_int8", "storage": storage, "class_names": list("0123456789"), "num_test": 359, "num_threads": 1,
            "variants": variants, "validated_model": "qat_int8", "required_devices": ["rpi_zero2w"], "devices": devices}


def test_report_fits_100_columns_and_wide_shows_every_column(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.json").write_text(json.dumps(_summary()))
    timings = {name: {"latency_p50_ms": 0.07, "latency_p90_ms": 0.09, "speedup": 1.0} for name in _summary()["variants"]}
    (tmp_path / "logs" / "timings").mkdir(parents=True)
    record = {"stage": "evaluate", "started_at": "2026-01-01T00:00:00.000+00:00",
              "ended_at": "2026-01-01T00:00:09.000+00:00", "host": "x86_64 test", **timings}
    (tmp_path / "logs" / "timings" / "evaluate.json").write_text(json.dumps(record))

    out = edgeqat("report", cwd=tmp_path, env={"COLUMNS": "100"})
    assert out.returncode == 0, out.stderr
    assert width(out.stdout) <= 100, out.stdout
    rows: dict = {}
    for line in out.stdout.splitlines():  # the comparison table's row (the storage table's follows)
        if line.strip():
            rows.setdefault(line.split()[0], line)
    for name in _summary()["variants"]:  # whole names, every row
        assert name in rows and "0.070" in rows[name], out.stdout
    head = next(line for line in out.stdout.splitlines() if line.startswith("variant"))
    assert "p90 ms" not in head and re.search(r"^--wide adds: .*p90 ms", out.stdout, re.M)  # said in one line
    assert re.search(r"^rpi_zero2w +yes +PASS", out.stdout, re.MULTILINE)
    assert "cortex_m4: model 184,168 bytes > flash 163,840 bytes; arena 40,208" in out.stdout  # the reasons, below
    assert re.search(r"^qat_int8 +301,449 +345,992 +152,960 +152,960 +152,960$", out.stdout, re.M), out.stdout  # stored bytes

    narrow = edgeqat("report", cwd=tmp_path, env={"COLUMNS": "72"})  # columns go, whole, until it fits
    header = next(line for line in narrow.stdout.splitlines() if line.startswith("variant"))
    assert width(narrow.stdout) <= 72 and "gzip" not in header, narrow.stdout
    assert all(re.search(rf"^{name} +0\.\d{{4}} ", narrow.stdout, re.M) for name in _summary()["variants"])

    wide = edgeqat("report", "--wide", cwd=tmp_path, env={"COLUMNS": "100"})
    for title in ("Δ acc vs ref", "agreement w/ Keras FP32", "size vs ref", "p90 ms", "integer-only", "stored bytes", "ethos_u65_256 DRAM", "ethos_u55_128 cycles",
                  "skipped: run `make arm64` to enable", "reasons"):
        assert title in wide.stdout, title
    assert width(wide.stdout) > 100

    data = json.loads(edgeqat("report", "--json", cwd=tmp_path).stdout)
    assert data["variants"]["fp32"]["latency_p90_ms"] == 0.09 and data["host"] == "x86_64 test"


def test_devices_fits_100_columns_and_says_it_as_json(tmp_path):
    piped = edgeqat("devices", cwd=tmp_path)  # no terminal, no COLUMNS: 100
    assert 90 < width(piped.stdout) <= 100, piped.stdout
    out = edgeqat("devices", cwd=tmp_path, env={"COLUMNS": "100"})
    assert out.returncode == 0 and width(out.stdout) <= 100, out.stdout
    assert re.search(r"^cortex_m4 +mcu +tflm +CMSIS-NN +48 KiB +160 KiB +yes +Arm Cortex-M4", out.stdout, re.MULTILINE)
    assert "…" not in out.stdout  # the long titles wrap between words, never cut
    wide = edgeqat("devices", "--wide", cwd=tmp_path, env={"COLUMNS": "100"})
    assert "Mid-range Android phone CPU (Pixel 3a class, Snapdragon 670, 2 big + 6 little cores)" in wide.stdout
    assert json.loads(edgeqat("devices", "--json", cwd=tmp_path).stdout)["cortex_m4"]["runtime"] == "tflm"


def test_check_params_json_has_every_default():
    from integration.conftest import REPO

    out = json.loads(edgeqat("check-params", "--json", cwd=REPO).stdout)
    assert out["ok"] is True and out["resolved"]["train"]["model"] and "evaluate" in out["resolved"]


def test_a_stage_prints_only_its_own_lines(tmp_path, tiny_npz):
    """A real train + convert as DVC runs them (stderr not a terminal, no TF_CPP_MIN_LOG_LEVEL):
    TensorFlow, absl, CUDA, oneDNN, the converter and LiteRT stay quiet; each epoch and each
    variant is one line."""
    import yaml

    from integration.conftest import REPO

    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["prepare"].update(source="npz", path=str(tiny_npz), image_size=16, calibration_size=16, shard_size=32)
    p["train"].update(alpha=0.25, epochs=2, batch_size=16, early_stopping_patience=0)
    p["convert"].update(variants=["fp32", "ptq_int8"])
    p["evaluate"].update(headline="ptq_int8")
    p["validate"].update(model="ptq_int8", variants=[])
    p["register"].update(variant="ptq_int8")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "EDGEQAT_", "MLFLOW_"))}
    lines = []
    for stage in ("prepare", "train", "convert"):
        proc = subprocess.run([str(BIN / "edgeqat"), "stage", stage], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "" and "\r" not in proc.stderr
        lines += proc.stderr.splitlines()
    foreign = [line for line in lines if not line.startswith("[edgeqat] ")]
    print(f"\n{len(foreign)} of {len(lines)} stderr lines are not edgeqat's")
    assert len(foreign) <= 5, "\n".join(foreign)
    assert len([line for line in lines if re.match(r"\[edgeqat\] train epoch \d/2: loss=", line)]) == 2, lines
    assert len([line for line in lines if re.match(r"\[edgeqat\] convert \d/2: \w+: [\d,]+ bytes", line)]) == 2, lines


# --- no table cuts a number or a name -------------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?")


def _cells(text: str) -> set[str]:
    return {t for line in text.splitlines() for t in re.split(r"\s{2,}|\s(?=[-+]?\d)", line.strip()) if t}


def _json_numbers(obj) -> set[float]:
    if isinstance(obj, dict):
        return set().union(*map(_json_numbers, obj.values())) if obj else set()
    if isinstance(obj, list):
        return set().union(*map(_json_numbers, obj)) if obj else set()
    return {float(obj)} if isinstance(obj, (int, float)) and not isinstance(obj, bool) else set()


def _shown_whole(number: str, values: set[float]) -> bool:
    """A number as a table shows it (separators, rounding, a percent) is one of the JSON's values."""
    n = float(number.replace(",", "").lstrip("+"))
    decimals = len(number.split(".")[1]) if "." in number else 0
    return any(abs(round(v, decimals) - n) < 10 ** -decimals / 2 + 1e-12 or abs(round(v * 100) - n) < 0.5 or
               abs(v / 1024 - n) < 0.5 or abs(v / 1024 ** 2 - n) < 0.5 for v in values)


@pytest.mark.parametrize("columns", ["80", "100"])
def test_every_table_shows_each_number_and_name_whole(tmp_path, columns):
    """At 80 and 100 columns: each number in `edgeqat report` and `edgeqat devices` is a value of
    their --json (whole, not 501,44 for 501,449), each variant and device name is whole, nothing is
    cut with an ellipsis, and what is left out is named in one line."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.json").write_text(json.dumps(_summary()))
    for command in (["report"], ["devices"]):
        out = edgeqat(*command, cwd=tmp_path, env={"COLUMNS": columns})
        data = json.loads(edgeqat(*command, "--json", cwd=tmp_path).stdout)
        assert out.returncode == 0, out.stderr
        assert width(out.stdout) <= int(columns) and "…" not in out.stdout, out.stdout
        # the JSON's numbers, and those its texts quote (a device's reasons name its budgets)
        values = _json_numbers(data) | {float(n.replace(",", "")) for n in NUMBER.findall(json.dumps(data))}
        table = "\n".join(line for line in out.stdout.splitlines() if not line.startswith(("Test split", "Pareto")))
        cut = [n for n in NUMBER.findall(table) if not _shown_whole(n, values)]
        assert not cut, (cut, out.stdout)
        names = set(data.get("variants", data)) | set(data.get("devices", {}))
        firsts = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
        assert names <= firsts | {n for n in names if n in out.stdout.split()}, names - firsts
        assert len([line for line in out.stdout.splitlines() if line.startswith("--wide adds: ")]) >= (columns == "80")


def test_help_shows_plain_placeholders_in_panels_everyday_commands_first():
    out = edgeqat("--help", env={"COLUMNS": "100"}).stdout
    panels = re.findall(r"╭─ ([^─]+?) ─", out)
    assert panels[:2] == ["Options", "Results and models"] and panels[-1] == "Project set-up", panels
    assert out.index(" report ") < out.index(" generate ") and out.index(" report ") < out.index(" check-params ")
    for command in (["promote", "--help"], ["validate", "--help"], ["stage", "track", "--help"], ["export", "--help"]):
        text = edgeqat(*command, env={"COLUMNS": "100"}).stdout
        assert not re.search(r"<(str|int|float|bool|path|list\[[a-z]+\])>", text), (command, text)
    promote = edgeqat("promote", "--help", env={"COLUMNS": "100"}).stdout
    assert "Usage: edgeqat promote [OPTIONS] VERSION" in promote and re.search(r"--alias +ALIAS ", promote)
    assert re.search(r"--force +Promote", promote)  # a flag: no placeholder
    validate = edgeqat("validate", "--help", env={"COLUMNS": "100"}).stdout
    assert re.search(r"--device +-d +DEVICE ", validate) and re.search(r"--latency-runs +INTEGER", validate)


def test_dvc_metrics_show_fits_100_columns(tmp_path):
    """The headline file the report stage writes, as `dvc metrics show` prints it."""
    from edgeqat.lifecycle.run_layout import dvc_headline

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "metrics").mkdir()
    head = dvc_headline(_summary(), gate_passed=True)
    (tmp_path / "metrics" / "headline.json").write_text(json.dumps(head))
    (tmp_path / "dvc.yaml").write_text("metrics:\n- metrics/headline.json\n")
    out = subprocess.run([str(BIN / "dvc"), "metrics", "show"], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "100"})
    assert out.returncode == 0, out.stderr
    print(f"\ndvc metrics show: {width(out.stdout)} columns\n{out.stdout}")
    assert width(out.stdout) <= 100 and len(head) <= 6, out.stdout
    assert all(k in out.stdout for k in head) and "…" not in out.stdout


@pytest.mark.slow
def test_ui_starts_the_mlflow_ui_on_loopback_and_print_only_says_how(tmp_path):
    from integration.conftest import free_port, stop_process_group, wait_until_up

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    printed = edgeqat("ui", "--print", cwd=tmp_path, env=env)
    assert printed.returncode == 0 and f"--backend-store-uri sqlite:///{tmp_path.resolve()}/mlflow.db" in printed.stdout
    assert "--host 127.0.0.1" in printed.stdout
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "edgeqat"), "ui", "--port", str(port)], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}", log, timeout=180)
        assert f"MLflow UI on http://127.0.0.1:{port}" in log.read_text()
    finally:
        stop_process_group(proc)
