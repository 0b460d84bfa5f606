"""`edgeqat data add PATH`: a user's data set -> versioned by DVC, selected in params.yaml,
committed, so the next `dvc exp run` trains on it.

What it does, in order, stopping at the first problem with the file or command at fault:
reads the data the way the prepare stage will (refusing what prepare would refuse) and picks
``prepare.source``, ``image_size`` and ``channels`` from the images; takes the folder out of
git's index if git tracks files in it (``data/raw`` ships with a README); ``dvc add``; writes
the four ``prepare`` keys into params.yaml, keeping its comments; commits the ``.dvc`` file,
the ``.gitignore`` and params.yaml. That commit is what `dvc exp run` needs: it refuses to
start over staged but uncommitted changes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import typer

from edgeqat.errors import EdgeqatError

data_app = typer.Typer(no_args_is_help=True, help="Your own data set: version it with DVC and select it.")


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise EdgeqatError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def _dvc() -> str:
    import shutil
    import sys

    here = Path(sys.executable).parent / "dvc"
    return str(here) if here.exists() else (shutil.which("dvc") or "dvc")


def _repo_root(start: Path) -> Path:
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EdgeqatError(f"{start.resolve()}: not in a git repository (edgeqat data add versions data in one)")
    root = Path(proc.stdout.strip())
    if not (root / ".dvc").is_dir():
        raise EdgeqatError(f"{root}: not a DVC repository; run `dvc init` first")
    return root


def add(path: Path, params_file: Path, commit: bool, image_size: Optional[int], channels: Optional[int]) -> dict:
    from edgeqat.config import set_params_text
    from edgeqat.data.describe import describe
    from edgeqat.io import log, write_text

    root = _repo_root(Path.cwd())
    target = path.resolve()
    try:
        rel = target.relative_to(root).as_posix()
    except ValueError:
        raise EdgeqatError(f"{path}: outside the repository {root}; copy it in first, e.g. "
                           f"`cp -r {path} {root / 'data' / 'raw'}/`") from None
    if rel in (".", ""):
        raise EdgeqatError(f"{path}: is the repository itself; name the data folder (e.g. data/raw)")
    if commit and subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        staged = _run(["git", "diff", "--cached", "--name-only"], root).split()
        raise EdgeqatError(f"git has staged changes ({', '.join(staged[:5])}{', ...' if len(staged) > 5 else ''}); "
                           "commit or unstage them first: edgeqat data add commits only its own changes")
    log(f"data add: reading {rel} as the prepare stage will")
    d = describe(target)
    chosen = {**d.params(rel), **({"prepare.image_size": image_size} if image_size else {}),
              **({"prepare.channels": channels} if channels else {})}
    params_path = params_file if params_file.is_absolute() else Path.cwd() / params_file
    new_params = set_params_text(params_path.read_text(), chosen, str(params_file))  # checked before anything changes

    if _run(["git", "ls-files", "--", rel], root).strip():  # git tracks files in it: DVC is to own the folder now
        _run(["git", "rm", "-r", "-q", "--cached", "--", rel], root)
    log(f"data add: dvc add {rel}")
    _run([_dvc(), "add", "-q", rel], root)
    write_text(params_path, new_params)
    dvc_file = f"{rel}.dvc"
    ignore = (Path(rel).parent / ".gitignore").as_posix().removeprefix("./")
    _run(["git", "add", "--", dvc_file, ignore, str(params_path.relative_to(root))], root)
    sha = None
    if commit:
        msg = (f"data: {rel} ({d.source}, {len(d.classes)} classes, {d.images:,} images) under DVC; "
               + " ".join(f"{k}={v}" for k, v in chosen.items()))
        _run(["git", "commit", "-q", "-m", msg], root)
        sha = _run(["git", "rev-parse", "--short", "HEAD"], root).strip()
    return {"path": rel, "dvc_file": dvc_file, "source": d.source, "classes": d.classes, "images": d.images,
            "params": chosen, "why": d.why, "commit": sha}


def install(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")

    @data_app.command("add")
    def add_cmd(path: Path = typer.Argument(..., help="The data inside the repository: a folder of class subfolders, "
                                            "MNIST-style IDX files, or an .npz."),
                params: Path = typer.Option(Path("params.yaml"), "--params"),
                commit: bool = typer.Option(True, "--commit/--no-commit", help="Commit the result (what `dvc exp run` "
                                            "needs); --no-commit leaves it staged."),
                image_size: Optional[int] = typer.Option(None, "--image-size", help="Instead of the size the images suggest."),
                channels: Optional[int] = typer.Option(None, "--channels", help="1 or 3, instead of what the images are."),
                as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
        """Version PATH with DVC, set prepare.source/path/image_size/channels from its images, and
        commit; then `dvc exp run` trains on it."""
        from edgeqat.adapters.cli.output import echo_json

        if channels not in (None, 1, 3):
            raise EdgeqatError(f"--channels {channels}: must be 1 or 3")
        r = add(path, params, commit, image_size, channels)
        if as_json:
            echo_json(r)
            return
        shown = ", ".join(r["classes"][:8]) + (", ..." if len(r["classes"]) > 8 else "")
        typer.echo(f"{r['path']}: {r['source']}, {len(r['classes'])} classes ({shown}), {r['images']:,} images; "
                   + "; ".join(r["why"]))
        typer.echo(f"{params}: " + ", ".join(f"{k}={v}" for k, v in r["params"].items()))
        typer.echo(f"DVC tracks it in {r['dvc_file']}; "
                   + (f"committed as {r['commit']}." if r["commit"] else "staged, not committed (--no-commit).")
                   + " Next: dvc exp run")
