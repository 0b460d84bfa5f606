# edgeqat — everyday commands. `make demo` on a fresh machine does everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# TensorFlow, MLflow and the rest stay quiet unless `edgeqat --verbose` (EDGEQAT_VERBOSE=1): edgeqat sets their levels.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv demo pipeline report ui test test-slow bench clean arm64 browser sshd image docker

help:
	@echo "make demo       create $(VENV), install, run the whole pipeline on the built-in digits, print the table"
	@echo "make test       unit + integration tests (tiny models)"
	@echo "make test-slow  tests of real-size models and the default-data pipeline"
	@echo "make bench      benchmarks (writes bench/results.md)"
	@echo "make browser    Debian chromium + chromium-driver for the MLflow UI browser test (apt-get, as root)"
	@echo "make arm64      emulated aarch64 Python + LiteRT under QEMU, in .cache/arm64 (edgeqat.devices.qemu)"
	@echo "make sshd       Debian openssh-server for the device-lab tests (an sshd on 127.0.0.1 as a board; apt-get, as root)"
	@echo "make image      the component image (Dockerfile) the Kubeflow tasks run in; IMAGE=, BASE_IMAGE= to choose"
	@echo "make docker     Debian's docker.io, and dockerd started in the background (as root)"

# The same pinned versions (constraints.txt) either way. uv installs them several times faster
# than pip (parallel downloads and unpacking): a uv on PATH is used, else uv is fetched into the
# venv first; where that fails (no uv wheel for the platform), pip does the install.
# UV=no forces pip.
UV_VERSION ?= 0.13.10
UV ?= $(shell command -v uv 2>/dev/null)
UV_RUN = $(or $(filter-out no,$(UV)),$(BIN)/uv)

$(BIN)/edgeqat: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	@if [ "$(UV)" != "no" ] && { [ -n "$(UV)" ] || $(BIN)/pip install --quiet "uv==$(UV_VERSION)"; }; then \
		echo "installing with uv (constraints.txt pins every version)"; \
		$(UV_RUN) pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[dev]"; \
	else \
		echo "installing with pip (constraints.txt pins every version)"; \
		$(BIN)/pip install --quiet --upgrade pip && $(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"; \
	fi
	@touch $@

venv: $(BIN)/edgeqat

# A configured DVC remote is pulled first, so a clone re-runs only what is not cached there; track
# and register then make sure this store holds the results (they reuse what it already has).
# check-params comes before any dvc command: DVC parses params.yaml with its own YAML loader, which
# a file of nested aliases (an alias bomb) holds for minutes at gigabytes; edgeqat's refuses it at once.
pipeline: venv
	$(BIN)/edgeqat check-params
	@if $(BIN)/dvc remote default >/dev/null 2>&1; then $(BIN)/dvc pull --allow-missing; fi
	$(BIN)/dvc repro
	$(BIN)/edgeqat stage track
	$(BIN)/edgeqat stage register

demo: pipeline
	@$(BIN)/edgeqat report
	@v=$$($(BIN)/python -c "import json; print(json.load(open('logs/registered.json'))['version'])" 2>/dev/null || echo VERSION); \
	echo ""; echo "Next:"; \
	echo "  $(BIN)/edgeqat ui                # the MLflow UI on http://127.0.0.1:5000: the run's curves, metrics, models"; \
	echo "  $(BIN)/edgeqat promote $$v        # make version $$v the champion (its gates are checked)"; \
	echo "  $(BIN)/edgeqat export             # the champion's .tflite and model card into deploy/"; \
	echo "  $(BIN)/edgeqat history            # every promotion, who and why"

report: venv
	@$(BIN)/edgeqat report

ui: venv
	$(BIN)/edgeqat ui

# Both tiers on PYTEST_WORKERS pytest workers (2: CI's cores). Much of a test's time is one
# core's work (graph building, conversion, a child process starting); on 2 cores the fast tier
# went from 2,791 s to 1,289 s (docs/testing.md). Whole files go to one worker (--dist loadfile),
# so a module's fixtures are built once.
PYTEST_WORKERS ?= 2
test: venv
	$(BIN)/pytest -m "not slow" -q -n $(PYTEST_WORKERS) --dist loadfile

test-slow: venv
	$(BIN)/pytest -m slow -q -n $(PYTEST_WORKERS) --dist loadfile

bench: venv
	$(BIN)/python bench/run.py

# The slow-tier UI test drives Debian's Chromium through its matching ChromeDriver (no driver download).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi
	@/usr/bin/chromedriver --version

# The device-lab tests start their own sshd on 127.0.0.1 (tests/integration/test_device_lab.py).
sshd:
	@if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null; \
	fi
	@/usr/sbin/sshd -V 2>&1 | head -1 || true

arm64: venv
	EDGEQAT_PIP=$(abspath $(BIN))/pip scripts/setup_arm64.sh

# The tag built is recorded in .cache/edgeqat-image: `edgeqat pipeline compile|submit|schedule` and
# `edgeqat pipeline run --local --docker` use it when neither --image nor EDGEQAT_IMAGE names one.
image:
	scripts/build_image.sh

docker:
	scripts/start_dockerd.sh

clean:
	rm -rf data/prepared models logs mlflow.db mlartifacts .pytest_cache
