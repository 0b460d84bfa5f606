"""A YAML alias bomb in this project's params.yaml, for the bad-input tests (issue 27 finding 4)."""

from __future__ import annotations

import yaml

from conftest import REPO


def alias_bomb(levels: int = 9) -> str:
    """Anchors of anchors: ``a{levels-1}`` expands to 9**levels strings (387 million at 9) from
    under a kilobyte of text."""
    lines = ['a0: &a0 ["fp32", "fp32", "fp32", "fp32", "fp32", "fp32", "fp32", "fp32", "fp32"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines)


def params_with_alias_bomb(levels: int = 9) -> str:
    """The shipped params.yaml with ``convert.variants`` pointing at the bomb's top anchor."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["convert"]["variants"] = "BOMB"
    return alias_bomb(levels) + "\n" + yaml.safe_dump(raw, sort_keys=False).replace(
        "variants: BOMB", f"variants: *a{levels - 1}")
