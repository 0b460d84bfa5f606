"""Atomic writes, contained paths, checksums and the model card.

Every output goes through :func:`atomic_path`: it is written under a temporary name in
the destination folder and renamed into place only once complete, so an interrupted
stage never leaves a half-written model for DVC to cache. A process killed outright
(``kill -9``) cannot clean up after itself: its temporary names carry its pid, and the
next write to the same destination removes those of dead processes
(:func:`remove_stale_temps`); :func:`is_temp_leftover` keeps them out of MLflow.

Every path built from a name that comes from outside (a model card's file name, a registry
tag, a parameter) goes through :func:`contained`, which refuses a name that would leave its
folder (``..``, an absolute path, a symlink pointing out). Every stage output goes through
:func:`check_output` first, so an output never replaces its own inputs, the workspace, or a
folder that no edgeqat stage wrote (recognised by :data:`OUTPUT_MARKER`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edgeqat.errors import DataError, ModelError, OutOfSpace, UnsafePath

# .<dest name>.<pid>.<mkdtemp random>.tmp (older versions: no pid), and .<dest name>.old-<pid>
_LEFTOVER = re.compile(r"^\.(?P<name>.+?)\.(?:(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp|old-(?P<oldpid>\d+))$")


def is_temp_leftover(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_path`'s temporary names."""
    return _LEFTOVER.match(name) is not None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete temporary names of dead writers in ``folder`` (only those for ``name`` if given)."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _LEFTOVER.match(p.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        pid = m["pid"] or m["oldpid"]
        if pid is not None and _alive(int(pid)):
            continue  # a writer still at work
        _remove(p)
        removed.append(p)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def maybe_atomic_dir(dest: str | Path | None) -> Iterator[Path | None]:
    """:func:`atomic_path` for an optional output folder (None: yields None, writes nothing)."""
    if dest is None:
        yield None
        return
    with atomic_path(dest, is_dir=True) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_path(dest: str | Path, *, is_dir: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of ``dest``; rename it onto ``dest`` on success.

    ``suffix`` keeps an extension some writers insist on (Keras wants ``.keras``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest.parent, dest.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the output should not be
    target = tmp if is_dir else tmp / f"part{suffix}"
    try:
        with out_of_space_is_an_error(dest):
            yield target
        if not target.exists():
            raise RuntimeError(f"writer produced nothing for {dest}")
        if dest.exists() and dest.is_dir() != target.is_dir():
            _remove(dest)
        if target.is_dir():
            # os.replace cannot swap a non-empty dir onto another: move the old one aside first.
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            if dest.exists():
                os.replace(dest, old)
            os.replace(target, dest)
            _remove(old)
        else:
            os.replace(target, dest)
    finally:
        _remove(tmp)


# --- contained paths and output folders -----------------------------------------------


def contained(root: str | Path, name: str | Path, source: str) -> Path:
    """``root / name``, refused (:class:`UnsafePath`, naming ``source``, where the name came
    from) unless it stays inside ``root`` once ``..`` and symlinks are resolved. An absolute
    or empty name is refused too: a name from a file never picks its own folder."""
    text = str(name)
    rel = Path(text)
    why = ("is empty" if text.strip() in ("", ".") else "is an absolute path" if rel.is_absolute()
           else None)
    if why is None:
        real_root = Path(root).resolve()
        target = (real_root / rel).resolve()
        if target == real_root or real_root not in target.parents:
            why = "leads outside it" + (" through a symlink" if ".." not in rel.parts else "")
    if why is not None:
        raise UnsafePath(f"{source}: file name {text!r} {why} (must stay inside {root}); refused, nothing written")
    return Path(root) / rel


OUTPUT_MARKER = ".edgeqat-output"  # in an output folder written at a path of the user's choosing


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(dest: str | Path, *, what: str, is_dir: bool, inputs: dict[str, Path], workspace: Path,
                 known: bool = False) -> None:
    """Refuse an output that would replace what is not its own: the workspace or a folder
    holding it, one of the step's ``inputs`` (or a folder holding one, or inside one), an
    existing folder an edgeqat stage did not write (``known``: the stage table's own path, a
    DVC out; else the folder carries :data:`OUTPUT_MARKER` or is empty), or a folder where a
    file goes."""
    real = Path(dest).resolve()
    ws = workspace.resolve()
    if _inside(ws, real):
        raise UnsafePath(f"{what} {dest}: is the workspace {workspace} or holds it; an output folder would replace "
                         "it (choose a new folder)")
    for name, path in inputs.items():
        src = path.resolve()
        if _inside(src, real) or _inside(real, src):
            how = "is" if src == real else "holds" if _inside(src, real) else "is inside"
            raise UnsafePath(f"{what} {dest}: {how} the input {name} ({path}); an output never replaces or writes "
                             "into its inputs (choose another path)")
    if not real.exists() and not real.is_symlink():
        return
    if not is_dir:
        if real.is_dir():
            raise UnsafePath(f"{what} {dest}: is a folder, and this output is a file; refusing to replace it")
        return
    if not real.is_dir():
        raise UnsafePath(f"{what} {dest}: is a file, and this output is a folder; refusing to replace it")
    if known or (real / OUTPUT_MARKER).is_file() or not any(real.iterdir()):
        return
    raise UnsafePath(f"{what} {dest}: folder exists and was not written by an edgeqat stage (no {OUTPUT_MARKER} "
                     "in it); refusing to replace it (remove it or choose a new folder)")


def mark_output(folder: str | Path, stage: str) -> None:
    """Say that ``folder`` is a stage's output, so a later run of the stage may replace it."""
    folder = Path(folder)
    if folder.is_dir() and not (folder / OUTPUT_MARKER).is_file():
        write_text(folder / OUTPUT_MARKER, f"written by edgeqat stage {stage}; replaced when it runs again\n")


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space(err: BaseException | None, folder: str | Path | None = None) -> OSError | None:
    """The disk-full error behind ``err`` (itself, or what caused it), if any. A short write
    without an errno (numpy's "N requested and M written") counts when ``folder``'s disk has
    (almost) nothing left."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError):
            if err.errno in NO_SPACE:
                return err
            if err.errno is None and "written" in str(err) and folder is not None and _disk_full(folder):
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _disk_full(folder: str | Path, slack: int = 64 << 10) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < slack


@contextlib.contextmanager
def out_of_space_is_an_error(dest: str | Path) -> Iterator[None]:
    """A full disk while writing ``dest``: one clear :class:`OutOfSpace` naming it, not a raw OSError."""
    try:
        yield
    except Exception as err:
        full = no_space(err, Path(dest).parent)
        if full is None:
            raise
        raise OutOfSpace(f"{dest}: no space left on the device while writing it ({full.strerror}); nothing was "
                         "kept; free some space or write it elsewhere") from None


def write_bytes(dest: str | Path, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: str | Path, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_json(dest: str | Path, obj: Any) -> Path:
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    # numpy scalars and arrays, without importing numpy here
    if hasattr(o, "item") and getattr(o, "shape", None) == ():
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    """Parsed JSON; a missing, unreadable or corrupt file is a DataError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); rerun the stage that writes it") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one level with dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- model card -----------------------------------------------------------------------
# One model_card.json per folder of .tflite files: the fields every variant shares
# (classes, input shape, normalisation) plus a `variants` map with each file's own I/O
# dtype, quantization scale and zero point, size and checksum. An exported single model
# carries the same structure with one variant.

CARD_NAME = "model_card.json"


def card_path_for(tflite: str | Path) -> Path:
    return Path(tflite).with_name(CARD_NAME)


def variant_file(folder: str | Path, card: dict[str, Any], variant: str) -> Path:
    """The .tflite file a card names for ``variant``, kept inside the card's ``folder``."""
    return contained(folder, card["variants"][variant]["file"], f"{Path(folder) / CARD_NAME}: variants.{variant}.file")


def load_card(tflite: str | Path) -> dict[str, Any]:
    """The card entry of one .tflite: shared fields merged with its variant's fields."""
    tflite = Path(tflite)
    path = card_path_for(tflite)
    if not path.is_file():
        raise ModelError(f"{tflite}: no {CARD_NAME} beside it (class names, input shape and normalisation live there)")
    card = read_json(path)
    variants = card.get("variants", {})
    name = tflite.stem
    if name not in variants:
        raise ModelError(f"{path}: has no entry for variant {name!r} (has: {', '.join(sorted(variants)) or 'none'})")
    merged = {k: v for k, v in card.items() if k != "variants"}
    merged.update(variants[name])
    merged["variant"] = name
    return merged


# --- messages -------------------------------------------------------------------------
# Progress of long loops: edgeqat.progress (bars on a terminal, one line per unit in a log).


# scheme://user:password@ (or scheme://token@): what a URL carries that no message may show.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/@:]*)(?::(?P<pw>[^\s/@]*))?@")
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with the password (or the lone token) of every URL in it replaced by ``***``:
    messages, logs and files never show a tracking URI's credentials."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@" if m["pw"] is not None
                         else f"{m['scheme']}{REDACTED}@", text)


def log(msg: str) -> None:
    print(f"[edgeqat] {redact(msg)}", file=sys.stderr, flush=True)
