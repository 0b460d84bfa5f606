"""Which component image a compiled pipeline names.

A cluster pulls every task's image by name, so a pipeline compiled for it must name an image
that exists: one the user names (``--image`` or ``EDGEQAT_IMAGE``) or the tag ``make image``
built (recorded in ``.cache/edgeqat-image``). The package's placeholder
(``edgeqat.components.DEFAULT_IMAGE``, which the committed YAML carries) has never been pushed
anywhere and is refused. The subprocess runner runs no image and needs none of this.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeqat.errors import EdgeqatError

IMAGE_ENV = "EDGEQAT_IMAGE"
RECORD = Path(".cache") / "edgeqat-image"  # written by scripts/build_image.sh (make image)
HOW = "build it with `make image` (push it where the cluster pulls from) or name one with --image or EDGEQAT_IMAGE"


def placeholder() -> str:
    from edgeqat.components import DEFAULT_IMAGE

    return DEFAULT_IMAGE


def recorded_image(root: str | Path = ".") -> str | None:
    """The tag the last ``make image`` in ``root`` built, if any."""
    path = Path(root) / RECORD
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def resolve_image(image: str | None = None, root: str | Path = ".") -> str:
    """``image``, else ``$EDGEQAT_IMAGE``, else the tag ``make image`` recorded; the first one
    given must not be the placeholder."""
    for source, value in (("--image", image), (IMAGE_ENV, os.environ.get(IMAGE_ENV)),
                          (str(RECORD), recorded_image(root))):
        if value:
            if value == placeholder():
                raise EdgeqatError(f"{source} {value}: the package's placeholder image, never pushed "
                                   f"anywhere, so no cluster can pull it; {HOW}")
            return value
    raise EdgeqatError(f"no component image for the cluster to pull: {HOW}")


def package_images(package: str | Path) -> set[str]:
    """Every container image a compiled pipeline YAML names."""
    import yaml

    spec = yaml.safe_load(Path(package).read_text())
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    return {e["container"]["image"] for e in executors.values() if "container" in e}


def check_package(package: str | Path) -> None:
    """Refuse a compiled pipeline that names the placeholder image (a cluster could not pull it)."""
    if placeholder() in package_images(package):
        raise EdgeqatError(f"{package}: its tasks name the placeholder image {placeholder()}, which no cluster "
                           f"can pull; compile it with an image: {HOW}")
