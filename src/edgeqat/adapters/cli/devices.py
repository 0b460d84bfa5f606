"""CLI commands of device validation: `devices`, `validate MODEL --device ...`, `stage validate`.

Kept apart from cli.py (which calls :func:`install`); nothing heavy loads until a command runs.
Exit status: 0 when every device passes, 1 when a device fails, 2 on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeqat.errors import EdgeqatError


def _fmt_bytes(v: Optional[int]) -> str:
    if v is None:
        return "–"
    return f"{v / 2**20:.0f} MiB" if v >= 2**20 else f"{v / 1024:.0f} KiB"


def _verdict_text(model: str, verdicts: list[dict]) -> str:
    from edgeqat.devices.storage import MEASURES

    lines = [f"{model}:"]
    for v in verdicts:
        est = v.get("latency_ms_estimate")
        le = v.get("latency_estimate") or {}
        est_txt = "–"
        if est is not None:
            est_txt = (f"{est:.0f}" if est >= 100 else f"{est:.3g}") + f" ms ({le.get('label', 'estimate')}, " \
                f"{le.get('kernel_library')}{', extrapolated' if le.get('extrapolated') else ''})"
        lines.append(f"  {v['device']:<18} {'PASS' if v['passed'] else 'FAIL'}  latency {est_txt}"
                     + (f", stores {v['stored_bytes']:,} {MEASURES.get(v.get('stored_measure'), 'bytes')}"
                        if v.get("stored_bytes") is not None else "")
                     + (f", arena {v['arena_bytes']:,} B (TFLM reference kernels)" if v.get("arena_bytes") else "")
                     + (f", accuracy {v['accuracy']:.4f}" if "accuracy" in v else ""))
        vela = v.get("vela")
        if vela and vela.get("ran"):
            lines.append(f"      vela {vela['version']}: {vela['cycles']:,} cycles, SRAM {vela['sram_bytes']:,} B, "
                         f"flash {vela['flash_bytes']:,} B, NPU ops {vela['npu_ops']}, CPU ops {vela['cpu_ops']}"
                         + (f" ({', '.join(vela['cpu_op_names'])})" if vela["cpu_op_names"] else ""))
        for r in v["reasons"]:
            lines.append(f"      - {r}")
        emu = v.get("emulation")
        if emu:
            lines.append("      qemu-aarch64: " + (("outputs bit-exact with x86" if emu.get("bit_exact") else
                                                    f"outputs differ (max |diff| {emu.get('max_abs_diff')})")
                                                   if emu.get("ran") else f"skipped: {emu.get('why')}"))
    return "\n".join(lines)


def install(app: typer.Typer, stage: typer.Typer) -> None:
    @app.command("devices")
    def devices_cmd(
        profiles_dir: Optional[Path] = typer.Option(None, "--profiles-dir", help="Also list your own profile YAMLs."),
        as_json: bool = typer.Option(False, "--json", help="Full profiles as JSON."),
    ) -> None:
        """List the device profiles (shipped ones and yours)."""
        from edgeqat.devices.profiles import available_profiles

        profs = available_profiles(profiles_dir)
        if as_json:
            typer.echo(json.dumps({n: p.model_dump() for n, p in profs.items()}, indent=2))
            return
        for n, p in profs.items():
            kernels = p.speed_model.kernel_library if p.speed_model else "Vela"
            typer.echo(f"{n:<18} {p.device_class:<10} {p.runtime:<7} {kernels:<10} "
                       f"RAM {_fmt_bytes(p.ram_bytes or p.sram_bytes):>8}  flash {_fmt_bytes(p.flash_bytes):>8}  "
                       f"{'int8-only ' if p.int8_only else ''}{p.title}")

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
        as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
    ) -> None:
        """Check one .tflite against device profiles: ops, memory, accuracy, latency; exit 1 if any fails."""
        from edgeqat.devices.profiles import resolve_profiles
        from edgeqat.devices.validate import check_tflite_file, validate_on_device

        check_tflite_file(model)
        profs = resolve_profiles(device, extra_dir=profiles_dir)
        from edgeqat.devices.eval_data import check_model_takes_data, load_eval_data

        ev = None
        if data is not None:
            ev = load_eval_data(data, reference)
        elif reference is not None:
            raise EdgeqatError("--reference needs --data (the images to compare on)")
        check_model_takes_data(model, ev, data)
        verdicts = [validate_on_device(model, p, ev, latency_runs=latency_runs, emulate=emulate,
                                       parity_samples=parity_samples) for p in profs]
        if as_json:
            typer.echo(json.dumps({"model": str(model), "devices": {v["device"]: v for v in verdicts}}, indent=2, default=str))
        else:
            typer.echo(_verdict_text(str(model), verdicts))
        if not all(v["passed"] for v in verdicts):
            raise typer.Exit(1)

