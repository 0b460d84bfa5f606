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
