# Everything a user or CI needs, from a fresh clone: `make demo`, `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test check lint typecheck unit bench up down clean

install: $(STAMP)

# torch first, from its CPU wheel: an unpinned resolve would pull gigabytes of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	@echo "install: the virtual environment $(VENV) ($(PYTHON))"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "install: torch 2.13.0, CPU wheel (a large download, a minute or two)"
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	@echo "install: every other dependency pinned in constraints.txt, and dreamer in editable mode (a minute or two)"
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)
	@echo "install: done; source $(VENV)/bin/activate for the dreamer and prefect commands"

demo: install
	$(BIN)/dreamer demo

lint: install
	$(BIN)/ruff check dreamer flows tests bench
	$(BIN)/ruff format --check dreamer flows tests bench

typecheck: install
	$(BIN)/mypy

check: lint typecheck

unit: install
	$(BIN)/pytest -m "not slow and not e2e"

# The full suite, slow and end-to-end tiers included: what CI runs.
test: check
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench.run_all

up: install
	bash scripts/up.sh

down:
	bash scripts/down.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
