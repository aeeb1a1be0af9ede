# Fresh clone: `make train` (set up, then train on the synthetic faces) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: train test test-slow test-all lint format clean-venv

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	touch $@

# Prints the time split at the end: set-up (environment), then data, fit and test (train.py).
train:
	@start=$$(date +%s); $(MAKE) --no-print-directory $(VENV)/.installed; \
	setup=$$(( $$(date +%s) - start )); \
	$(PY) src/train.py $(ARGS); status=$$?; \
	echo "make train: set-up $${setup} s, whole command $$(( $$(date +%s) - start )) s" \
	     "(data, fit and test times in the last log lines)"; exit $$status

# The fast tier (under 3 minutes on 2 cores; unit tests, reference values and one real
# train -> checkpoint -> eval); test-slow adds the end-to-end runs, test-all runs both.
test: $(VENV)/.installed
	WANDB_MODE=offline $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.installed
	WANDB_MODE=offline $(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	WANDB_MODE=offline $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests experiments benchmarks
	$(VENV)/bin/ruff format --check src tests experiments benchmarks

format: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests experiments benchmarks
	$(VENV)/bin/ruff check --fix src tests experiments benchmarks

clean-venv:
	rm -rf $(VENV)
