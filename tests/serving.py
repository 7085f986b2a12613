"""Serve a real app under uvicorn on a free loopback port, for tests that talk HTTP to it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI


def serve(app: FastAPI, log_level: str = "warning", port: int = 0) -> Iterator[httpx.Client]:
    """A client for `app` served on loopback; the server stops when the generator is closed.

    The port is a free one, unless given (a test that brings a server back where it was)."""
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:  # also when the generator is closed early
        server.should_exit = True
        thread.join(timeout=10)


def wait_idle(client: httpx.Client, within_s: float = 10.0) -> None:
    """Wait until no answer is in progress (`agent_active_answers` 0): an answer's slot is
    released only once its generator has closed, so after this its session is fed no more."""
    deadline = time.monotonic() + within_s
    while "agent_active_answers 0.0" not in client.get("/metrics").text:
        assert time.monotonic() < deadline, "an answer is still in progress"
        time.sleep(0.02)


def wait_ready(
    client: httpx.Client,
    within_s: float = 10.0,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> httpx.Response:
    """Wait for `/readyz` (a model loads in seconds to minutes) and return its response; a
    `process` serving it must not exit meanwhile (its `log` is shown if it does)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            response = client.get("/readyz")
            if response.status_code == 200:
                return response
            said = response.text
        except httpx.TransportError as exc:  # not listening yet
            said = str(exc)
        assert time.monotonic() < deadline, f"the service did not become ready: {said}"
        if process is not None:
            assert process.poll() is None, log.read_text() if log else "the service exited"
        time.sleep(0.02 if within_s <= 10 else 0.5)


@contextlib.contextmanager
def served_process(
    log: Path, env: dict[str, str] | None = None, ready_within_s: float = 300
) -> Iterator[httpx.Client]:
    """`agent-server serve` as a user starts it, in a process of its own on a free loopback
    port, with `env` added to the environment; a client once it is ready. Its output goes to
    `log`, which a failure to start shows."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "agent_server.cli", "serve", "--port", str(port)],
            env={**os.environ, "AGENT_HOST": "127.0.0.1", **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
                wait_ready(client, ready_within_s, server, log)
                yield client
        finally:
            server.terminate()
            server.wait(timeout=30)
