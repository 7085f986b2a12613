"""An inference server for the remote backend: llama-cpp-python's OpenAI-compatible server on
the settings' GGUF (`agent-server model-server`). The deployment guide's compose profile runs it
in a container of its own; the remote backend's tests and benchmark start it on loopback.

Any server that speaks the completions API will do instead (vLLM, TGI, llama.cpp's own
`llama-server`); this one is here because it installs with the project and runs the same GGUF.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def command(gguf: Path, alias: str, host: str, port: int, threads: int = 0) -> list[str]:
    """The server's command line: every position's logits (what its `logprobs` read) and a RAM
    prompt cache, so a request that extends an earlier one is not read from scratch.

    It serves one request at a time, and a new request cuts off the one streaming (its
    `interrupt_requests`). Turning that off is worse: a stream the remote backend abandons (the
    engine took another token) is not stopped on disconnect, so it would hold the server until
    its lookahead is written. Concurrent answers on this server take turns; vLLM or llama.cpp's
    `llama-server` batch them."""
    threads = threads or os.cpu_count() or 1
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
        "--host", host, "--port", str(port), "--n_ctx", "4096",
        "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--logits_all", "true", "--cache", "true", "--verbose", "false",
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(gguf: Path, alias: str, threads: int = 0, timeout_s: float = 120) -> Iterator[str]:
    """The server on a free loopback port while the block runs; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        command(gguf, alias, "127.0.0.1", port, threads),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(url):
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"llama_cpp.server exited: {error[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer within {timeout_s} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
