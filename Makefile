# Fresh clone: `make train` (set up, then train on the synthetic faces) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: train test lint format clean-venv

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

train: $(VENV)/.installed
	$(PY) src/train.py $(ARGS)

test: $(VENV)/.installed
	WANDB_MODE=offline $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests experiments benchmarks
	$(VENV)/bin/ruff format --check src tests experiments benchmarks

format: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests experiments benchmarks
	$(VENV)/bin/ruff check --fix src tests experiments benchmarks

clean-venv:
	rm -rf $(VENV)
