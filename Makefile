# edgeqat — everyday commands. `make demo` on a fresh machine does everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# TensorFlow, MLflow and the rest stay quiet unless `edgeqat --verbose` (EDGEQAT_VERBOSE=1): edgeqat sets their levels.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv demo pipeline report ui test test-slow bench clean arm64 browser

help:
	@echo "make demo       create $(VENV), install, run the whole pipeline on the built-in digits, print the table"
	@echo "make test       unit + integration tests (tiny models)"
	@echo "make test-slow  tests of real-size models and the default-data pipeline"
	@echo "make bench      benchmarks (writes bench/results.md)"
	@echo "make browser    Debian chromium + chromium-driver for the MLflow UI browser test (apt-get, as root)"
	@echo "make arm64      emulated aarch64 Python + LiteRT under QEMU, in .cache/arm64 (edgeqat.devices.qemu)"

$(BIN)/edgeqat: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

venv: $(BIN)/edgeqat

# A configured DVC remote is pulled first, so a clone re-runs only what is not cached there; track
# and register then make sure this store holds the results (they reuse what it already has).
pipeline: venv
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

test: venv
	$(BIN)/pytest -m "not slow" -q

test-slow: venv
	$(BIN)/pytest -m slow -q

bench: venv
	$(BIN)/python bench/run.py

# The slow-tier UI test drives Debian's Chromium through its matching ChromeDriver (no driver download).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi
	@/usr/bin/chromedriver --version

arm64: venv
	EDGEQAT_PIP=$(abspath $(BIN))/pip scripts/setup_arm64.sh

clean:
	rm -rf data/prepared models logs mlflow.db mlartifacts .pytest_cache
