#!/usr/bin/env python3
"""Print the Debian mirror this machine's apt is configured with, for a suite (default bookworm).

Reads /etc/apt/sources.list and /etc/apt/sources.list.d/ as apt does (one-line ``*.list`` and
deb822 ``*.sources`` files; anything else in the folder is ignored, as apt ignores it) and prints
the URI of the first enabled ``deb`` entry that serves ``<suite>`` with the ``main`` component.
scripts/build_base_image.sh bootstraps the base image from it, so no mirror is written into the
repository. Exit 2 with one line on stderr when no entry serves the suite.

    scripts/debian_mirror.py [--suite bookworm] [--apt-dir /etc/apt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _one_line_entries(text: str):
    """``deb [opts] URI suite comp...`` lines -> (types, uris, suites, components)."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        kind, rest = words[0], words[1:]
        if rest and rest[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            yield [kind], [rest[0]], [rest[1]], rest[2:]


def _deb822_entries(text: str):
    """Stanzas of a ``.sources`` file -> (types, uris, suites, components); disabled ones skipped."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:  # a folded continuation line
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "uris" in fields and "suites" in fields:
            yield (fields.get("types", "").split(), fields["uris"].split(), fields["suites"].split(),
                   fields.get("components", "").split())


def source_files(apt_dir: Path) -> list[Path]:
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    return [f for f in files if f.is_file()]


def mirror(suite: str, apt_dir: Path) -> str | None:
    for path in source_files(apt_dir):
        text = path.read_text(errors="replace")
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for types, uris, suites, components in entries:
            if "deb" in types and suite in suites and "main" in components and uris:
                return uris[0].rstrip("/")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--apt-dir", type=Path, default=Path("/etc/apt"))
    args = ap.parse_args(argv)
    uri = mirror(args.suite, args.apt_dir)
    if uri is None:
        read = ", ".join(str(p) for p in source_files(args.apt_dir)) or f"nothing under {args.apt_dir}"
        print(f"no enabled 'deb' source serves {args.suite} main (read: {read}); "
              "set EDGEQAT_DEBIAN_MIRROR to a Debian mirror URL", file=sys.stderr)
        return 2
    print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
