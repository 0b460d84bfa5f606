"""Where a run came from: git commit and state, for MLflow tags."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(cwd: str | Path = ".") -> dict[str, str]:
    cwd = Path(cwd)
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"git_commit": "unknown"}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"git_commit": commit, "git_dirty": "true" if status else "false"}


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
