# Set-up is idempotent: the environment is (re)built only when pyproject.toml
# or constraints.txt change. Override PYTHON, VENV, TORCH_SPEC or TORCH_PIP_ARGS
# (e.g. an index with the CUDA build you want) on the command line.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.metamap-installed

.PHONY: setup demo test test-fast lint core-install bench-extras bench-sinusoid bench-speed bench-omniglot clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# torch first, so that nothing later pulls another build; an existing torch (CPU or GPU) is kept.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/metamap demo

# Two worker processes (pytest-xdist): the whole suite in about 5 minutes on 2 cores instead of about 15.
test: setup
	$(BIN)/python -m pytest -n 2

# The edit-test loop: everything but the tests marked slow.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" -n 2

lint: setup
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy
	$(BIN)/python -m metamap._layers

# A core install (no extras) in a fresh venv: the CLI and every module that needs no extra must import.
core-install:
	bash .ci/core-install

bench-extras: setup
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,bench]"

bench-sinusoid: setup
	$(BIN)/metamap bench sinusoid --json benchmarks/sinusoid.json

bench-speed: bench-extras
	$(BIN)/metamap bench speed --json benchmarks/speed.json

bench-omniglot: setup
	$(BIN)/metamap bench omniglot --json benchmarks/omniglot.json

clean:
	rm -rf $(VENV) runs .pytest_cache
