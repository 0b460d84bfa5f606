# The component image every KFP task runs in: `make image` builds it (see docs/kubeflow.md).
#   make image                                   -> edgeqat:0.1.0 on a base built from Debian
#   make image BASE_IMAGE=python:3.11-slim       -> where a container registry is reachable
#   make image IMAGE=registry.example/team/edgeqat:0.1.0 && docker push registry.example/team/edgeqat:0.1.0
# Only what the components import: the package and its runtime dependencies (no dev extra, no
# browser). BuildKit (DOCKER_BUILDKIT=1) is needed for the CA secret; it reads RUN --mount with
# its built-in Dockerfile frontend, so no frontend image is pulled.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1 \
    PATH=/opt/venv/bin:$PATH

# One venv at a fixed path whatever the base (python:3.11-slim or a Debian python3): KFP runs
# `python3` from PATH, and the tasks' logs show this prefix (the test's proof of where they ran).
RUN python3 -m venv /opt/venv \
    && useradd --create-home --uid 1000 edgeqat

WORKDIR /opt/edgeqat
# Dependencies (and the build backend) first, from the pins alone: a source change rebuilds
# only the small layer below. TensorFlow's C++ headers (430 MB) only serve compiling custom ops.
# ca_bundle (optional): a CA file for pip where TLS goes through an intercepting proxy, mounted
# for this RUN only: `docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt`.
COPY pyproject.toml constraints.txt ./
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(p['build-system']['requires'] + p['project']['dependencies']))" >/tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt \
    && rm -r /tmp/requirements.txt /opt/venv/lib/python3.11/site-packages/tensorflow/include

COPY README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
# Not editable; its dependencies and build backend are above, so nothing is fetched here.
RUN pip install --no-cache-dir --no-deps --no-build-isolation -c constraints.txt . \
    && pip check \
    && rm -rf build src/*.egg-info

USER 1000
WORKDIR /home/edgeqat
# matplotlib's font cache, built once here rather than in every task's fresh container
RUN python3 -c "import matplotlib.font_manager"
CMD ["edgeqat", "--help"]
