# Fresh clone: `make train` (set up, then train on the synthetic faces) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: train test test-slow test-all lint format clean-venv editable

# The pinned environment is installed by uv (itself pinned, installed by pip): it unpacks the
# wheels in parallel, several times faster than pip (experiments/performance.md). uv does not read
# pip's configuration, so the package sources pip is set up with on this machine (PIP_* variables
# or pip.conf: index-url, extra-index-url, find-links) are handed on; with none, it uses PyPI.
# All sources are searched for the pinned versions, as pip does (--index-strategy). Byte code is
# compiled once at install: where PYTHONDONTWRITEBYTECODE is set (as on CI machines), Python
# would otherwise compile torch and Lightning again in every process (about 15 s each).
pip_setting = $(or $($(1)),$(shell $(PYTHON) -m pip config get global.$(2) 2>/dev/null))
UV_SOURCES = $(foreach url,$(call pip_setting,PIP_INDEX_URL,index-url),--index-url $(url)) \
	$(foreach url,$(call pip_setting,PIP_EXTRA_INDEX_URL,extra-index-url),--extra-index-url $(url)) \
	$(foreach url,$(call pip_setting,PIP_FIND_LINKS,find-links),--find-links $(url))
UV_INSTALL = $(VENV)/bin/uv pip install --python $(PY) --quiet --index-strategy unsafe-best-match \
	$(UV_SOURCES) -c constraints.txt

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt uv
	$(UV_INSTALL) --compile-bytecode -e '.[dev]'
	touch $@

# Point an existing environment's editable install at this checkout (used by .ci/run).
editable: $(VENV)/.installed
	$(UV_INSTALL) --no-deps -e .

# Prints the time split at the end: set-up (environment), then data, fit and test (train.py).
train:
	@start=$$(date +%s); $(MAKE) --no-print-directory $(VENV)/.installed; \
	setup=$$(( $$(date +%s) - start )); \
	$(PY) src/train.py $(ARGS); status=$$?; \
	echo "make train: set-up $${setup} s, whole command $$(( $$(date +%s) - start )) s" \
	     "(data, fit and test times in the last log lines)"; exit $$status

# The fast tier (under 3 minutes on 2 cores; unit tests, reference values and one real
# train -> checkpoint -> eval); test-slow adds the end-to-end runs, test-all runs both.
# Tests run in one process per core (pytest-xdist; PYTEST_WORKERS=0 runs them in this one);
# tests sharing an expensive fixture are kept together (xdist_group marks).
PYTEST_WORKERS ?= auto
PYTEST := WANDB_MODE=offline $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: $(VENV)/.installed
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.installed
	$(PYTEST) -m slow $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(PYTEST) $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests experiments benchmarks
	$(VENV)/bin/ruff format --check src tests experiments benchmarks

format: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests experiments benchmarks
	$(VENV)/bin/ruff check --fix src tests experiments benchmarks

clean-venv:
	rm -rf $(VENV)
