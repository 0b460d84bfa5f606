# The component image the KFP tasks run in (edgeqat.components.BASE_IMAGE):
#   docker build -t ghcr.io/<you>/edgeqat:0.1.0 . && docker push ghcr.io/<you>/edgeqat:0.1.0
#   edgeqat pipeline compile --image ghcr.io/<you>/edgeqat:0.1.0   (or EDGEQAT_IMAGE=...)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1

WORKDIR /opt/edgeqat
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
# The same pinned versions as `make venv`; kfp comes with the package, so the
# components are compiled with install_kfp_package=False.
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --create-home --uid 1000 edgeqat

USER 1000
WORKDIR /home/edgeqat
CMD ["edgeqat", "--help"]
