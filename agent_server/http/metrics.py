"""Prometheus metrics on a registry of the app's own, served by `GET /metrics`.

    agent_requests_total{route,method,status}    every HTTP response, 401/413/429 included
    agent_request_seconds{route}                 until the last byte of the body (streams too)
    agent_tokens_total{kind}                     prompt | completion | spliced
    agent_tool_calls_total{tool,outcome}         ok | error | timeout; unknown names: "other"
    agent_queue_depth, agent_active_answers      read from `Admission` when scraped
    agent_model_loaded                           1 when /readyz says ready

The registry is not the process-wide default, so several apps in one process (tests) never
clash. Routes are labelled by their template (`/v1/conversations/{conversation_id}`), never
the raw path, so a label's values stay few.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from agent_server.core.events import FinalEvent
from agent_server.http.admission import Admission

if TYPE_CHECKING:
    from agent_server.core.engine import Engine

# Answers take seconds on a CPU (a short one about 5 s) and may run to the 120 s request
# limit; health checks and scrapes take milliseconds. The default buckets stop at 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
TOKEN_KINDS = ("prompt", "completion", "spliced")
# Any token is a method to HTTP; others are counted as "other" so a client can't mint labels.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, admission: Admission, engine: Callable[[], Engine | None]) -> None:
        """`engine` returns the loaded engine, or None while the model loads (as /readyz sees)."""
        self._engine = engine
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "agent_requests", "HTTP responses", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "agent_request_seconds",
            "time from request to the end of the response body",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("agent_tokens", "tokens by kind", ["kind"], registry=r)
        for kind in TOKEN_KINDS:  # present at 0 from the start, so rates work from the first
            self.tokens.labels(kind)
        self.tool_calls = Counter(
            "agent_tool_calls", "tool calls by outcome", ["tool", "outcome"], registry=r
        )
        queue = Gauge("agent_queue_depth", "answers waiting for a slot", registry=r)
        queue.set_function(lambda: admission.waiting)
        active = Gauge("agent_active_answers", "answers in progress", registry=r)
        active.set_function(lambda: admission.active)
        loaded = Gauge("agent_model_loaded", "1 once the model is loaded", registry=r)
        loaded.set_function(lambda: float(engine() is not None))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def observe_final(self, final: FinalEvent) -> None:
        """Count an answer's tokens and its tool calls (from its trace)."""
        self.tokens.labels("prompt").inc(final.usage.prompt_tokens)
        self.tokens.labels("completion").inc(final.usage.completion_tokens)
        self.tokens.labels("spliced").inc(final.usage.spliced_tokens)
        engine = self._engine()
        known = engine.tools if engine is not None else {}
        for call in final.trace:
            # The name of a malformed or unknown call is whatever the model wrote: not a label.
            tool = call.tool if call.tool in known else "other"
            self.tool_calls.labels(tool, _outcome(call.error)).inc()

    def exposition(self) -> bytes:
        """The text exposition format, served with `CONTENT_TYPE`."""
        body: bytes = generate_latest(self.registry)
        return body


def _outcome(error: str | None) -> str:
    if error is None:
        return "ok"
    # tools.base.invoke words every time-out this way ("Search timed out after 10 s").
    return "timeout" if "timed out" in error else "error"
