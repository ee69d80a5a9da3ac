# The README's quick start: `make demo` and `make test`. Each installs what it needs first
# (a virtual environment in .venv) and is safe to run again.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyPI's torch 2.13.0 build (CUDA 13.0; it also runs on CPU) with its matching torchvision.
# `===` asks for exactly this build, not a local `+cpu` wheel, so that torchvision imports.
TORCH_SPEC ?= "torch===2.13.0" "torchvision==0.28.*"

.PHONY: env demo test lint clean-demo

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $@

demo: env
	$(BIN)/snakemake --profile profiles/demo

test: env lint
	$(BIN)/python -m pytest

# Style is part of the test command, so CI fails on a regression.
lint: env
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/black --check -q .
	$(BIN)/ruff check -q .

clean-demo:
	rm -rf results_demo
