"""Kubeflow Pipelines v2 lightweight components, one per stage of the table (edgeqat.stages),
generated into generated.py by `edgeqat generate`. The image they run in is ``BASE_IMAGE``:
the project's image (Dockerfile), overridable with ``EDGEQAT_IMAGE`` when compiling.
Installed as ``edgeqat.components`` (pyproject maps this folder into the package).
"""

import os

DEFAULT_IMAGE = "ghcr.io/edgeqat/edgeqat:0.1.0"
BASE_IMAGE = os.environ.get("EDGEQAT_IMAGE") or DEFAULT_IMAGE
