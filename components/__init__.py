"""Kubeflow Pipelines v2 lightweight components, one per stage of the table (edgeqat.workspace.stages),
generated into generated.py by `edgeqat generate`. They are declared with ``BASE_IMAGE``:
``DEFAULT_IMAGE``, a placeholder that was never pushed anywhere (the committed YAML carries it),
unless ``EDGEQAT_IMAGE`` is set. Compiling for a cluster or a docker run replaces it with a real
image and refuses the placeholder (edgeqat.adapters.kfp.images); `make image` builds one.
Installed as ``edgeqat.components`` (pyproject maps this folder into the package).
"""

import os

DEFAULT_IMAGE = "ghcr.io/edgeqat/edgeqat:0.1.0"
BASE_IMAGE = os.environ.get("EDGEQAT_IMAGE") or DEFAULT_IMAGE
