"""Serve a real app under uvicorn on a free loopback port, for tests that talk HTTP to it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

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


def wait_ready(client: httpx.Client) -> httpx.Response:
    deadline = time.monotonic() + 10
    while (response := client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.02)
    return response
