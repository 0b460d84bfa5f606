"""Where a run came from: git commit and state, for MLflow tags."""

from __future__ import annotations

import subprocess
from pathlib import Path


# The pipeline's own committed outputs: an execution rewrites them, so they do not make the
# working tree "dirty" for the run that writes them.
PIPELINE_OUTPUTS = ("dvc.lock", "metrics/", "plots/", "reports/")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(cwd: str | Path = ".", ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """The commit and whether tracked files differ from it; changes to paths starting with one
    of ``ignore`` (the pipeline's own outputs, which a run rewrites) do not count as dirty."""
    cwd = Path(cwd)
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"git_commit": "unknown"}
    top = _git(["rev-parse", "--show-prefix"], cwd) or ""
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", "."], cwd) or ""
    changed = [line[3:].strip().strip('"') for line in status.splitlines() if line.strip()]
    # porcelain paths are relative to the repository top; ``ignore`` is relative to ``cwd``
    dirty = [c for c in changed if not c.removeprefix(top).startswith(ignore)]
    return {"git_commit": commit, "git_dirty": "true" if dirty else "false"}


def parse_tags(items: list[str]) -> dict[str, str]:
    """`--tag KEY=VALUE` options (repeatable) -> a tag dict; a malformed one is named."""
    from edgeqat.errors import EdgeqatError

    tags = {}
    for t in items:
        if "=" not in t:
            raise EdgeqatError(f"--tag {t!r}: expected KEY=VALUE")
        k, v = t.split("=", 1)
        tags[k] = v
    return tags


def raw_data_lineage(source: str, path: str | None, root: str | Path = ".") -> dict[str, str]:
    """Where the raw data came from, as DVC knows it: the ``.dvc`` file of ``path`` (``dvc add``,
    ``dvc import``, ``dvc import-url``: its hash, and the repository or URL it was imported from),
    else the hash ``dvc.lock`` recorded for it as the prepare stage's dep. The built-in digits
    have no DVC hash (they ship with scikit-learn)."""
    import yaml

    from edgeqat.catalog.datasources import builtin_origin

    out = {"source": source}
    builtin = builtin_origin(source)
    if builtin or not path:
        out["path"] = builtin or "sklearn.datasets.load_digits (built in)"
        return out
    root, rel = Path(root), path.rstrip("/")
    out["path"] = rel
    dvcfile = root / f"{rel}.dvc"
    try:
        if dvcfile.is_file():
            doc = yaml.safe_load(dvcfile.read_text()) or {}
            outs = (doc.get("outs") or [{}])[0]
            out["dvc_file"] = f"{rel}.dvc"
            out["dvc_hash"] = str(outs.get("md5") or outs.get("etag") or outs.get("checksum") or "")
            for dep in doc.get("deps") or []:  # an import: what it was imported from
                repo = dep.get("repo") or {}
                if repo:
                    out["imported_from"] = f"{repo.get('url', '?')}:{dep.get('path', '')}@{repo.get('rev_lock', '?')}"
                else:
                    out["imported_from"] = str(dep.get("path", "?"))
            return out
        lock = root / "dvc.lock"
        if lock.is_file():
            stages = (yaml.safe_load(lock.read_text()) or {}).get("stages") or {}
            for dep in (stages.get("prepare") or {}).get("deps") or []:
                if str(dep.get("path", "")).rstrip("/") == rel:
                    out["dvc_hash"] = str(dep.get("md5") or dep.get("hash") or "")
                    out["dvc_file"] = "dvc.lock (prepare's dep)"
    except (OSError, yaml.YAMLError, AttributeError, IndexError, TypeError) as err:
        out["unreadable"] = f"{type(err).__name__}: {err}"[:300]
    return out
