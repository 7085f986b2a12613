"""The HTTP app under a real uvicorn server on loopback, with the scripted model behind it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from doubles import EchoTool
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings


def _serve(factory: Callable[[Settings], Engine]) -> Iterator[httpx.Client]:
    return serve(create_app(Settings(), factory))


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def client(backend: ScriptedBackend) -> Iterator[httpx.Client]:
    yield from _serve(lambda _: Engine(backend, {"Echo": EchoTool()}, Prompt("chat")))


def test_ask_returns_answer_and_trace(client, backend):
    backend.queue(['It is [Echo("olleh")', " hello."])
    assert wait_ready(client).json() == {"status": "ready", "model": "scripted"}
    response = client.post("/v1/ask", json={"question": "Say hello"})
    assert response.status_code == 200
    body = response.json()
    assert body["answer"] == "It is hello."
    assert body["trace"][0] | {"duration_s": 0} == {
        "tool": "Echo",
        "argument": "olleh",
        "result": "hello",
        "error": None,
        "duration_s": 0,
    }
    assert body["usage"]["completion_tokens"] > 0
    assert body["stop_reason"] == "eos"


def test_bad_bodies_get_4xx_json_naming_the_problem(client):
    wait_ready(client)
    empty = client.post("/v1/ask", json={"question": ""})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "question"]
    extra = client.post("/v1/ask", json={"question": "x", "colour": "red"})
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "colour"]
    not_json = client.post("/v1/ask", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    unknown = client.post("/v1/ask", json={"question": "x", "tools": ["Nope"]})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "unknown tools ['Nope']; available: ['Echo']"}


def test_not_ready_is_503_with_retry_after(backend):
    gate = threading.Event()

    def slow_factory(_: Settings) -> Engine:
        gate.wait(10)
        return Engine(backend, {}, Prompt("chat"))

    for client in _serve(slow_factory):
        assert client.get("/healthz").json() == {"status": "ok"}
        response = client.post("/v1/ask", json={"question": "x"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json() == {"error": "the model is still loading"}
        gate.set()
        wait_ready(client)


def test_failed_model_load_is_reported_by_readyz():
    def failing_factory(_: Settings) -> Engine:
        raise FileNotFoundError("no weights")

    for client in _serve(failing_factory):
        deadline = time.monotonic() + 10
        while "no weights" not in (body := client.get("/readyz").json()).get("error", ""):
            assert time.monotonic() < deadline, body
            time.sleep(0.02)
        assert body == {"error": "FileNotFoundError: no weights"}


def test_stop_strings_and_sampling_options_reach_the_engine(client, backend):
    backend.queue("First part. STOP second part")
    wait_ready(client)
    body = {"question": "q", "stop": ["STOP"], "temperature": 0.7, "seed": 3}
    response = client.post("/v1/ask", json=body)
    assert response.json()["answer"] == "First part."
    assert response.json()["stop_reason"] == "stop"
    too_hot = client.post("/v1/ask", json={"question": "q", "temperature": 9})
    assert too_hot.status_code == 422 and too_hot.json()["detail"][0]["loc"] == [
        "body",
        "temperature",
    ]
