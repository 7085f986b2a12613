"""Operations and limits: admission, metrics, request ids, access logs, body limit, keys, CORS.

The HTTP tests run the real app under uvicorn on loopback with the scripted model; routes that
use the admission are mounted by the tests themselves, on the app each test builds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import serving
from doubles import EchoTool
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from prometheus_client.parser import text_string_to_metric_families

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.events import FinalEvent, ResultEvent, Usage
from agent_server.core.prompts import Prompt
from agent_server.errors import Overloaded, RequestTimeout
from agent_server.http.admission import Admission
from agent_server.http.app import create_app
from agent_server.http.deps import AdmissionDep, EngineDep, MetricsDep, SettingsDep
from agent_server.http.metrics import Metrics
from agent_server.http.middleware import request_id
from agent_server.settings import Settings

# --- Admission ------------------------------------------------------------------------------


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_admission_limits_active_and_queued_and_refuses_beyond():
    async def main() -> None:
        admission = Admission(max_active=2, max_waiting=1)
        release = asyncio.Event()

        async def hold() -> None:
            async with admission.slot():
                await release.wait()

        tasks = [asyncio.create_task(hold()) for _ in range(3)]
        await _settle()
        assert (admission.active, admission.waiting) == (2, 1)
        with pytest.raises(Overloaded) as refused:
            async with admission.slot():
                pass
        assert "2 of 2 answering (max_active_answers) and 1 of 1 waiting (max_queued_answers)" in (
            str(refused.value)
        )
        assert 1 <= refused.value.retry_after_s <= 60
        release.set()
        await asyncio.gather(*tasks)
        assert (admission.active, admission.waiting) == (0, 0)

    asyncio.run(main())


def test_admission_serves_the_queue_in_order():
    async def main() -> list[int]:
        admission = Admission(max_active=1, max_waiting=10)
        order: list[int] = []

        async def answer(n: int) -> None:
            async with admission.slot():
                order.append(n)
                await asyncio.sleep(0.001)

        first = asyncio.create_task(answer(0))
        await _settle()
        rest = []
        for n in range(1, 6):
            rest.append(asyncio.create_task(answer(n)))
            await _settle()
        await asyncio.gather(first, *rest)
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4, 5]


def test_a_cancelled_waiter_frees_its_place():
    async def main() -> None:
        admission = Admission(max_active=1, max_waiting=1)
        release = asyncio.Event()

        async def hold() -> None:
            async with admission.slot():
                await release.wait()

        holder = asyncio.create_task(hold())
        waiter = asyncio.create_task(hold())
        await _settle()
        assert admission.waiting == 1
        waiter.cancel()
        await _settle()
        assert (admission.active, admission.waiting) == (1, 0)
        late = asyncio.create_task(hold())  # the place is free again
        await _settle()
        assert admission.waiting == 1
        release.set()
        await asyncio.gather(holder, late)
        assert (admission.active, admission.waiting) == (0, 0)

    asyncio.run(main())


def test_a_waiter_cancelled_as_the_slot_reaches_it_passes_the_slot_on():
    async def main() -> None:
        admission = Admission(max_active=1, max_waiting=2)
        release = asyncio.Event()
        entered: list[str] = []

        async def hold(name: str) -> None:
            async with admission.slot():
                entered.append(name)
                await release.wait()

        holder = asyncio.create_task(hold("holder"))
        await _settle()
        second = asyncio.create_task(hold("second"))
        await _settle()
        third = asyncio.create_task(hold("third"))
        await _settle()
        release.set()
        await asyncio.sleep(0)  # the holder leaves and hands its slot to `second`...
        second.cancel()  # ...which is cancelled before it runs again
        await asyncio.gather(holder, third)
        assert entered == ["holder", "third"]
        assert second.cancelled()
        assert (admission.active, admission.waiting) == (0, 0)

    asyncio.run(main())


def test_a_slot_is_released_when_its_body_fails():
    async def main() -> None:
        admission = Admission(max_active=1, max_waiting=0)
        with pytest.raises(ValueError):
            async with admission.slot():
                raise ValueError("bug")
        assert admission.active == 0
        async with admission.slot():
            assert admission.active == 1
            with pytest.raises(Overloaded):  # no queue at all: busy means refused
                async with admission.slot():
                    pass

    asyncio.run(main())


def test_limit_turns_a_timeout_into_request_timeout_and_frees_the_queue():
    async def main() -> None:
        admission = Admission(max_active=1, max_waiting=1)
        with pytest.raises(RequestTimeout, match=r"0\.05 s \(request_timeout_s\)"):
            async with admission.limit(0.05):
                await asyncio.sleep(5)
        async with admission.slot():  # a waiter whose time runs out in the queue leaves it
            with pytest.raises(RequestTimeout):
                async with admission.limit(0.05), admission.slot():
                    pass
            assert admission.waiting == 0
        with pytest.raises(TimeoutError):  # the body's own TimeoutError is not renamed
            async with admission.limit(5):
                raise TimeoutError("a socket's")
        async with admission.limit(None):
            await asyncio.sleep(0)

    asyncio.run(main())


def test_observe_final_counts_tokens_and_tool_outcomes():
    engine: Any = SimpleNamespace(tools={"Echo": EchoTool(), "Search": EchoTool()})
    metrics = Metrics(Admission(1, 1), lambda: engine)

    def call(tool: str, error: str | None) -> ResultEvent:
        return ResultEvent(0, tool, "x", None if error else "ok", error, 0.1)

    trace = (
        call("Echo", None),
        call("Search", "Search timed out after 10 s"),
        call("Search", "rate limited"),
        call("[Nope", "malformed call: unclosed"),
    )
    metrics.observe_final(FinalEvent("a", "a", trace, Usage(10, 5, 2)))
    value = metrics.registry.get_sample_value
    assert value("agent_tokens_total", {"kind": "prompt"}) == 10
    assert value("agent_tokens_total", {"kind": "completion"}) == 5
    assert value("agent_tokens_total", {"kind": "spliced"}) == 2
    assert value("agent_tool_calls_total", {"tool": "Echo", "outcome": "ok"}) == 1
    assert value("agent_tool_calls_total", {"tool": "Search", "outcome": "timeout"}) == 1
    assert value("agent_tool_calls_total", {"tool": "Search", "outcome": "error"}) == 1
    assert value("agent_tool_calls_total", {"tool": "other", "outcome": "error"}) == 1


# --- the HTTP service -------------------------------------------------------------------------


def _mount_test_routes(app: FastAPI, gate: threading.Event) -> None:
    """Routes the way the API's own will use admission and metrics, plus a few probes."""

    async def answer(
        engine: EngineDep, admission: AdmissionDep, metrics: MetricsDep, settings: SettingsDep
    ) -> dict[str, str]:
        async with admission.limit(settings.request_timeout_s), admission.slot():
            final = await engine.run("q")
        metrics.observe_final(final)
        return {"answer": final.answer}

    async def held(admission: AdmissionDep, settings: SettingsDep) -> dict[str, str]:
        async with admission.limit(settings.request_timeout_s), admission.slot():
            while not gate.is_set():  # set from the test's thread
                await asyncio.sleep(0.01)
        return {"status": "done"}

    async def item(item_id: int) -> dict[str, Any]:
        return {"item": item_id, "request_id": request_id.get()}

    async def body_size(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                await asyncio.sleep(0.1)
                yield b"chunk\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test/answer", answer, methods=["POST"])
    app.add_api_route("/test/held", held, methods=["POST"])
    app.add_api_route("/test/items/{item_id}", item)
    app.add_api_route("/test/body", body_size, methods=["POST"])
    app.add_api_route("/test/stream", stream)
    app.add_api_route("/test/broken", broken)


class Served(SimpleNamespace):
    client: httpx.Client
    backend: ScriptedBackend
    gate: threading.Event
    url: str


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start the app with the given settings (and model factory) under uvicorn on loopback."""
    stops: list[Callable[[], None]] = []

    def start(factory: Callable[[Settings], Engine] | None = None, **settings: Any) -> Served:
        backend = ScriptedBackend()
        gate = threading.Event()

        def echo_engine(_: Settings) -> Engine:
            return Engine(backend, {"Echo": EchoTool()}, Prompt("chat"))

        app = create_app(Settings(**settings), factory or echo_engine)
        _mount_test_routes(app, gate)
        running = serving.serve(app, log_level="critical")
        client = next(running)

        def stop() -> None:
            gate.set()
            running.close()

        stops.append(stop)
        return Served(client=client, backend=backend, gate=gate, url=str(client.base_url))

    yield start
    for stop in stops:
        stop()


def _eventually(check: Callable[[], Any], timeout_s: float = 5) -> Any:
    """Poll `check` until it returns something true: logs and metrics are written just after
    the response leaves."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return result


def _samples(client: httpx.Client, **headers: str) -> dict[tuple[str, frozenset[Any]], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _count(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _samples_once(
    client: httpx.Client, name: str, value: float, **labels: str
) -> dict[tuple[str, frozenset[Any]], float]:
    """The samples as soon as `name{labels}` reaches `value`."""

    def reached() -> dict[tuple[str, frozenset[Any]], float]:
        samples = _samples(client)
        return samples if _count(samples, name, **labels) == value else {}

    return _eventually(reached)


def test_full_queue_gets_429_with_retry_after_and_a_json_error(serve):
    app = serve(max_active_answers=1, max_queued_answers=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, f"{app.url}/test/held", timeout=10)
        _eventually(lambda: _count(_samples(app.client), "agent_active_answers") == 1)
        second = pool.submit(httpx.post, f"{app.url}/test/held", timeout=10)
        _eventually(lambda: _count(_samples(app.client), "agent_queue_depth") == 1)
        refused = app.client.post("/test/held")
        assert refused.status_code == 429
        assert refused.headers["retry-after"].isdigit()
        assert "1 of 1 waiting (max_queued_answers)" in refused.json()["error"]
        assert list(refused.json()) == ["error"]
        app.gate.set()
        assert first.result().status_code == second.result().status_code == 200
    samples = _samples(app.client)
    assert _count(samples, "agent_queue_depth") == _count(samples, "agent_active_answers") == 0
    assert _count(samples, "agent_requests_total", route="/test/held", method="POST", status="429")


def test_request_over_its_time_limit_gets_504(serve):
    app = serve(request_timeout_s=0.2)
    response = app.client.post("/test/held")  # the gate stays shut
    assert response.status_code == 504
    assert response.json() == {
        "error": "the request took longer than its limit of 0.2 s (request_timeout_s)"
    }


def test_metrics_count_requests_by_route_template_and_the_answers_work(serve):
    app = serve()
    app.backend.queue(['It is [Echo("olleh")', " hello."])
    _eventually(lambda: app.client.get("/readyz").status_code == 200)
    assert app.client.post("/test/answer").json() == {"answer": "It is hello."}
    for n in (1, 2, 3):
        assert app.client.get(f"/test/items/{n}").status_code == 200
    assert app.client.get("/nowhere").status_code == 404
    assert app.client.request("PROPFIND", "/nowhere").status_code == 404
    assert app.client.get("/test/stream").text == "chunk\n" * 3

    samples = _samples_once(app.client, "agent_request_seconds_count", 1, route="/test/stream")
    requests = "agent_requests_total"
    assert _count(samples, requests, route="/test/items/{item_id}", method="GET", status="200") == 3
    assert not any("/test/items/1" in str(key) for key in samples)
    assert _count(samples, requests, route="unmatched", method="GET", status="404") == 1
    assert _count(samples, requests, route="unmatched", method="other", status="404") == 1
    assert _count(samples, requests, route="/test/answer", method="POST", status="200") == 1
    assert _count(samples, "agent_request_seconds_count", route="/test/items/{item_id}") == 3
    # a stream is timed to its last chunk (three 0.1 s pauses)
    assert _count(samples, "agent_request_seconds_sum", route="/test/stream") >= 0.3
    assert _count(samples, "agent_tokens_total", kind="completion") > 0
    assert _count(samples, "agent_tokens_total", kind="spliced") > 0
    assert _count(samples, "agent_tool_calls_total", tool="Echo", outcome="ok") == 1
    assert _count(samples, "agent_model_loaded") == 1


def test_model_loaded_gauge_agrees_with_readyz(serve):
    gate = threading.Event()
    backend = ScriptedBackend()

    def slow_factory(_: Settings) -> Engine:
        gate.wait(10)
        return Engine(backend, {}, Prompt("chat"))

    app = serve(slow_factory)
    assert app.client.get("/readyz").status_code == 503
    assert _count(_samples(app.client), "agent_model_loaded") == 0
    gate.set()
    _eventually(lambda: app.client.get("/readyz").status_code == 200)
    assert _count(_samples(app.client), "agent_model_loaded") == 1


def test_request_id_is_echoed_or_generated_and_reaches_the_handler(serve):
    app = serve()
    given = app.client.get("/test/items/7", headers={"X-Request-ID": "req-42.a:b"})
    assert given.headers["x-request-id"] == "req-42.a:b"
    assert given.json()["request_id"] == "req-42.a:b"
    made = app.client.get("/test/items/7")
    assert len(made.headers["x-request-id"]) == 32
    assert made.json()["request_id"] == made.headers["x-request-id"]
    for bad in ("has spaces", "x" * 200, "semi;colon"):
        replaced = app.client.get("/healthz", headers={"X-Request-ID": bad})
        assert len(replaced.headers["x-request-id"]) == 32
    assert made.headers["x-request-id"] != replaced.headers["x-request-id"]


def test_an_unhandled_error_is_a_json_500_with_the_request_id(serve):
    app = serve()
    response = app.client.get("/test/broken", headers={"X-Request-ID": "oops"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert response.headers["x-request-id"] == "oops"


def test_body_over_the_limit_is_413_declared_or_chunked(serve):
    app = serve(max_body_bytes=1000)
    declared = app.client.post("/test/body", content=b"x" * 2000)
    assert declared.status_code == 413
    assert declared.json() == {
        "error": "the request body is larger than 1000 bytes (max_body_bytes)"
    }
    assert "x-request-id" in declared.headers

    def chunks(n: int) -> Iterator[bytes]:
        yield from [b"x" * 400] * n

    chunked = app.client.post("/test/body", content=chunks(4))
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert chunked.status_code == 413
    assert app.client.post("/test/body", content=chunks(2)).json() == {"bytes": 800}
    assert app.client.post("/test/body", content=b"y" * 1000).json() == {"bytes": 1000}
    samples = _samples_once(
        app.client, "agent_requests_total", 2, route="/test/body", method="POST", status="413"
    )
    assert _count(samples, "agent_requests_total", route="/test/body", method="POST", status="200")


def test_api_keys_guard_everything_but_the_health_routes(serve):
    app = serve(api_keys=["sekrit-1", "sekrit-2"])
    missing = app.client.get("/test/items/1")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["error"]
    wrong = app.client.get("/test/items/1", headers={"Authorization": "Bearer sekrit-3"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "x-request-id" in wrong.headers
    basic = app.client.get("/test/items/1", headers={"Authorization": "Basic sekrit-1"})
    assert basic.status_code == 401
    for key in ("sekrit-1", "sekrit-2"):
        ok = app.client.get("/test/items/1", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    assert app.client.get("/healthz").status_code == 200
    assert app.client.get("/readyz").status_code in (200, 503)  # open, loaded or not
    assert app.client.get("/metrics").status_code == 401
    # The chat UI's files load without a key (the page then asks for one); nothing else does.
    assert app.client.get("/").status_code == 200
    assert app.client.get("/api.js").status_code == 200
    assert app.client.post("/").status_code == 401
    assert app.client.get("/v1/conversations").status_code == 401
    assert app.client.get("/openapi.json").status_code == 401
    samples = _samples(app.client, Authorization="Bearer sekrit-1")
    refused = _count(
        samples, "agent_requests_total", route="/test/items/{item_id}", method="GET", status="401"
    )
    assert refused == 3


def test_api_keys_must_not_be_empty():
    with pytest.raises(ValueError, match="non-empty"):
        Settings(api_keys=[""])


def test_cors_preflight_answers_allowed_origins_only(serve):
    app = serve(cors_origins=["https://app.example"], api_keys=["sekrit"])
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = app.client.options(
        "/test/answer", headers={"Origin": "https://app.example", **preflight}
    )
    assert allowed.status_code == 200  # preflights carry no key
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    denied = app.client.options(
        "/test/answer", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in denied.headers
    # a refusal is still readable by the allowed page
    refused = app.client.get("/test/items/1", headers={"Origin": "https://app.example"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in refused.headers["access-control-expose-headers"].lower()


def test_no_cors_headers_without_origins(serve):
    app = serve()
    response = app.client.get("/healthz", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


def test_one_json_access_log_line_per_request(serve, caplog):
    caplog.set_level(logging.INFO, logger="agent_server.access")
    app = serve(max_body_bytes=10)
    app.client.get("/test/items/5", headers={"X-Request-ID": "log-1"})
    app.client.post("/test/body", content=b"z" * 100, headers={"X-Request-ID": "log-2"})

    def lines() -> list[dict[str, Any]]:
        found = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
        return found if {"log-1", "log-2"} <= {line["request_id"] for line in found} else []

    logged = {line["request_id"]: line for line in _eventually(lines)}
    assert sum(line["request_id"] == "log-1" for line in lines()) == 1
    first = logged["log-1"]
    assert first["method"] == "GET"
    assert first["route"] == "/test/items/{item_id}"
    assert first["path"] == "/test/items/5"
    assert first["status"] == 200
    assert first["client"] == "127.0.0.1"
    assert first["duration_ms"] >= 0
    assert logged["log-2"]["status"] == 413
    assert logged["log-2"]["route"] == "/test/body"
