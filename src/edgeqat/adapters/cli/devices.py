"""CLI commands of device validation: `devices`, `devices calibrate DEVICE`, `validate MODEL --device ...`.

Kept apart from cli.py (which calls :func:`install`); nothing heavy loads until a command runs.
Exit status: 0 when every device passes, 1 when a device fails, 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeqat.adapters.cli.output import Col, WideOpt, echo_json, show, table
from edgeqat.errors import EdgeqatError


def _fmt_bytes(v: Optional[int]) -> str:
    if v is None:
        return "–"
    return f"{v / 2**20:.0f} MiB" if v >= 2**20 else f"{v / 1024:.0f} KiB"


VERDICT_COLS = (Col("device"), Col("verdict"), Col("latency ms", "right"), Col("latency from", wide=True, text=True),
                Col("arena B", "right", wide_header="TFLM arena bytes", drop=1), Col("accuracy", "right"),
                Col("agreement", "right", wide=True), Col("stored B", "right", wide_header="stored bytes (device measure)", drop=1),
                Col("Vela (Ethos-U)", wide=True, text=True), Col("QEMU aarch64", text=True, drop=2),
                Col("reasons", wide=True, text=True))


def _latency(v: dict) -> tuple[str, str]:
    """The figure the budget was checked against and where it came from."""
    ms = v.get("latency_ms", v.get("latency_ms_estimate"))
    le, src = v.get("latency_estimate") or {}, str(v.get("latency_source", ""))
    if ms is None:
        return "–", "–"
    cell = f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"
    if src == "measured":
        return cell + " (measured)", f"measured on {v.get('latency_measured_on')}"
    if "vela" in src:
        return cell + " (vela)", src
    band = le.get("error_band") or {}
    within = f", ±{band['median_rel_error']:.0%} median held-out error" if band.get("median_rel_error") is not None else ""
    tags = []
    if v.get("latency_extrapolated"):
        tags.append("extrap." if v.get("latency_gated", True) else "extrap., not gated")
    proxy = v.get("latency_proxy")  # e.g. "ARM proxy: Raspberry Pi 4 row, not x86 evidence"
    if proxy:
        tags.append(proxy.split(":")[0])
    tag = f" ({', '.join(tags)})" if tags else ""
    return cell + tag, f"{src or 'estimate'}, {le.get('kernel_library')}{within}" + (f"; {proxy}" if proxy else "")


def _stored(v: dict) -> str:
    """The bytes the device keeps: the flatbuffer (LiteRT/TFLM) or Vela's encoded flash (Ethos-U)."""
    b = v.get("stored_bytes", v.get("model_bytes"))
    if b is None:
        return "–"
    return f"{b:,}" + (" (Vela)" if str(v.get("stored_measure", "")).startswith("vela") else "")


def _vela(v: dict) -> str:
    vela = v.get("vela") or {}
    if not vela.get("ran"):
        return "–"
    return (f"vela {vela['version']}: {vela['cycles']:,} cycles, SRAM {vela['sram_bytes']:,} B, flash {vela['flash_bytes']:,} B, "
            f"NPU ops {vela['npu_ops']}, CPU ops {vela['cpu_ops']}"
            + (f" ({', '.join(vela['cpu_op_names'])})" if vela["cpu_op_names"] else ""))


def _emulation(v: dict) -> str:
    emu = v.get("emulation")
    if not emu:
        return "–"
    if not emu.get("ran"):
        return f"skipped: {emu.get('why')}"
    if emu.get("bit_exact"):
        return "bit-exact with x86"
    return ("within parity tolerance" if emu.get("within_tolerance") else "outputs differ") + f" (max |diff| {emu.get('max_abs_diff'):.3g})"


def verdict_rows(verdicts: list[dict]) -> list[list]:
    rows = []
    for v in verdicts:
        est, source = _latency(v)
        rows.append([v["device"], "PASS" if v["passed"] else "FAIL", est, source,
                     f"{v['arena_bytes']:,}" if v.get("arena_bytes") else "–",
                     f"{v['accuracy']:.4f}" if v.get("accuracy") is not None else "–",
                     f"{v['agreement']:.4f}" if v.get("agreement") is not None else "–",
                     _stored(v), _vela(v), _emulation(v),
                     "; ".join(v["reasons"]) or "–"])
    return rows


def profile_rows(profs: dict) -> list[list]:
    return [[n, p.device_class, p.runtime, p.speed_model.kernel_library if p.speed_model else ("measured" if p.connect else "Vela"),
             _fmt_bytes(p.ram_bytes or p.sram_bytes), _fmt_bytes(p.flash_bytes), "yes" if p.int8_only else "no", p.title]
            for n, p in profs.items()]


PROFILE_COLS = (Col("profile"), Col("class", drop=2), Col("runtime"), Col("kernels", drop=3), Col("RAM", "right"),
                Col("flash", "right", drop=1),
                Col("int8", wide_header="int8 only"), Col("title", text=True, drop=4))


def install(app: typer.Typer, stage: typer.Typer) -> None:
    devices_app = typer.Typer(help="List the device profiles (shipped ones and yours); `calibrate` measures one.",
                              no_args_is_help=False, invoke_without_command=True)
    app.add_typer(devices_app, name="devices")

    @devices_app.callback(invoke_without_command=True)
    def devices_cmd(
        ctx: typer.Context,
        profiles_dir: Optional[Path] = typer.Option(None, "--profiles-dir", help="Also list your own profile YAMLs."),
        as_json: bool = typer.Option(False, "--json", help="Full profiles as JSON."),
        wide: bool = WideOpt,
    ) -> None:
        """List the device profiles (shipped ones and yours)."""
        from edgeqat.devices.profiles import available_profiles

        if ctx.invoked_subcommand is not None:
            return
        profs = available_profiles(profiles_dir)
        if as_json:
            echo_json({n: p.model_dump() for n, p in profs.items()})
            return
        show(table(PROFILE_COLS, profile_rows(profs), wide), wide=wide)

    @app.command("validate")
    def validate_cmd(
        model: Path = typer.Argument(..., help="A .tflite file."),
        device: list[str] = typer.Option(..., "--device", "-d", help="Profile name or YAML file (repeatable)."),
        profiles_dir: Optional[Path] = typer.Option(None, "--profiles-dir", help="A folder of your own profiles."),
        data: Optional[Path] = typer.Option(None, "--data", help="Prepared splits (data/prepared): adds accuracy."),
        reference: Optional[Path] = typer.Option(None, "--reference", help="FP32 Keras model: adds top-1 agreement."),
        latency_runs: int = typer.Option(50, min=1),
        emulate: bool = typer.Option(True, help="Run ARM Linux profiles under QEMU where available."),
        parity_samples: int = typer.Option(256, min=1, help="Images TFLM runs (bit-exact with LiteRT) per MCU profile."),
        gate_on_extrapolated: bool = typer.Option(True, help="Let an extrapolated latency estimate fail a device."),
        calibration: Optional[Path] = typer.Option(
            None, "--calibration", help="Measured-rows file estimates learn from and measurements add to "
                                        "(default: PROFILES_DIR/measured.csv, else devices/measured.csv)."),
        as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
        wide: bool = WideOpt,
    ) -> None:
        """Check one .tflite against device profiles: ops, memory, accuracy, latency; exit 1 if any fails.
        Profiles with `connect:` (a board over SSH, `host`) are measured on the device itself."""
        from edgeqat.devices.calibration import calibration_file
        from edgeqat.devices.profiles import resolve_profiles
        from edgeqat.devices.validate import check_tflite_file, validate_on_device, verdict_line
        from edgeqat.progress import bar

        check_tflite_file(model)
        profs = resolve_profiles(device, extra_dir=profiles_dir)
        from edgeqat.devices.eval_data import check_model_takes_data, load_eval_data

        ev = None
        if data is not None:
            ev = load_eval_data(data, reference, trust_code=False)  # a file named on the command line: never trusted
        elif reference is not None:
            raise EdgeqatError("--reference needs --data (the images to compare on)")
        check_model_takes_data(model, ev, data)
        verdicts = []
        with bar("validate", total=len(profs)) as progress:
            for p in profs:
                progress.start(p.name)
                verdicts.append(validate_on_device(model, p, ev, latency_runs=latency_runs, emulate=emulate,
                                                   parity_samples=parity_samples, gate_on_extrapolated=gate_on_extrapolated,
                                                   calibration=calibration or calibration_file(profiles_dir)))
                progress.done(f"{p.name}: {verdict_line(verdicts[-1])}")
        if as_json:
            echo_json({"model": str(model), "devices": {v["device"]: v for v in verdicts}})
        else:
            rows = verdict_rows(verdicts)
            show(f"{model}:", table(VERDICT_COLS, rows, wide), wide=wide)
            if not wide:  # one unfolded line per failing device: what failed and why
                for r in rows:
                    if r[1] == "FAIL":
                        typer.echo(f"  {r[0]}: {r[-1]}")
        if not all(v["passed"] for v in verdicts):
            raise typer.Exit(1)


    @devices_app.command("calibrate")
    def calibrate_cmd(
        device: str = typer.Argument(..., help="A profile with connect: (e.g. host, or your board's YAML)."),
        profiles_dir: Optional[Path] = typer.Option(None, "--profiles-dir", help="A folder of your own profiles."),
        calibration: Optional[Path] = typer.Option(
            None, "--calibration", help="Where the rows go (default: PROFILES_DIR/measured.csv, else devices/measured.csv)."),
        dtype: str = typer.Option("int8", help="int8 or fp32: the reference models' compute dtype."),
        runs: int = typer.Option(30, min=1, help="Timed runs per model (after the profile's warm-up)."),
        as_json: bool = typer.Option(False, "--json", help="Print the rows and errors as JSON."),
    ) -> None:
        """Measure a reference set (the zoo models at a few sizes) on a device and write its rows:
        estimates for that device then fit them. Prints the held-out error before and after."""
        from edgeqat.devices.calibrate import calibrate
        from edgeqat.devices.calibration import calibration_file
        from edgeqat.devices.profiles import resolve_profiles

        if dtype not in ("int8", "fp32"):
            raise EdgeqatError(f"--dtype: expected int8 or fp32, got {dtype!r}")
        from edgeqat.devices.runtimes.measured import MeasureError

        (prof,) = resolve_profiles([device], extra_dir=profiles_dir)
        if prof.connect is None:
            raise EdgeqatError(f"{prof.name}: its profile has no connect: block, so there is nothing to measure on "
                               "(add `connect: ssh://user@host` or use `host`)")
        out = calibration or calibration_file(profiles_dir)
        try:
            res = calibrate(prof, out, dtype=dtype, runs=runs)
        except MeasureError as err:
            raise EdgeqatError(f"{prof.name}: {err.check} check could not run: {err}; no row was written") from None
        if as_json:
            echo_json(res)
            return
        rows = [[r["model"], f"{r['macs'] / 1e6:.3g}", f"{r['measured_ms']:.3g}",
                 "–" if r["published_ms"] is None else f"{r['published_ms']:.3g}",
                 "–" if r["loo_ms"] is None else f"{r['loo_ms']:.3g}"] for r in res["rows"]]
        cols = (Col("model"), Col("M MACs", "right"), Col("measured ms", "right"), Col("published est.", "right"),
                Col("held-out est.", "right"))
        before, after = res["before"], res["after"]
        show(table(cols, rows, False),
             f"{len(res['rows'])} rows for {prof.name} in {out}",
             "held-out error: " + (f"published figures median {before['median_rel_error']:.0%} (max {before['max_rel_error']:.0%}), "
                                   if before.get("median_rel_error") is not None else "no published estimate, ")
             + (f"measured rows (leave-one-out) median {after['median_rel_error']:.0%} (max {after['max_rel_error']:.0%})"
                if after.get("median_rel_error") is not None else "too few rows for a held-out check"))
