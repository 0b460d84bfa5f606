"""Kubeflow Pipelines v2 lightweight components: one per DVC stage, named after it.

Each body only imports edgeqat, builds its typed config section from its parameters
(``edgeqat.kfp_params.section_config``), calls the step function with artifact paths and
logs the step's metrics to ``Output[Metrics]``. The image they run in is ``BASE_IMAGE``:
the project's image (Dockerfile), overridable with ``EDGEQAT_IMAGE`` when compiling.
Installed as ``edgeqat.components`` (pyproject maps this folder into the package).
"""

import os

DEFAULT_IMAGE = "ghcr.io/edgeqat/edgeqat:0.1.0"
BASE_IMAGE = os.environ.get("EDGEQAT_IMAGE") or DEFAULT_IMAGE
