# ICP Kit. `make` (or `make help`) lists the targets.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := icp-kit

CONFIG ?= params/demo.yaml
QUARTER ?=
REPORTS ?= reports
JOBS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install quarterly test lint bench clean

help: ## list the targets
	@echo "ICP Kit targets:"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "Options: CONFIG=params/demo.yaml QUARTER=2026Q3 (default: last complete"
	@echo "quarter in the data) REPORTS=reports JOBS=<segments at once>"
	@echo "PYTEST_ARGS=<extra pytest args>"

install: $(STAMP) ## create .venv, install the kit, register the icp-kit kernel

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) \
		--display-name "Python (ICP Kit)" >/dev/null
	@touch $(STAMP)

quarterly: $(STAMP) ## run the quarterly job: CONFIG=... QUARTER=...
	$(VENV)/bin/icp quarterly --config $(CONFIG) --reports $(REPORTS) \
		$(if $(QUARTER),--quarter $(QUARTER)) $(if $(JOBS),--jobs $(JOBS))

test: $(STAMP) ## run the whole test suite
	$(PY) -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP) ## check style with ruff
	$(PY) -m ruff check icp_lib tests bench
	$(PY) -m ruff format --check icp_lib tests bench

bench: $(STAMP) ## time a demo run and record it in bench/results/
	$(PY) bench/run_bench.py

clean: ## remove caches, build files, demo data and unfinished runs (keeps reports)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info data/demo
	rm -rf reports/.staging-*
	find icp_lib tests bench -name __pycache__ -type d -prune -exec rm -rf {} +
