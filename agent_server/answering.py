"""One request, one path: an `AnswerRequest` is answered by the engine or, in WebGPT mode, by
browsing. Both HTTP routes, the CLI and the evals build the request and call `answer`; each of
them only translates its own input (a JSON body, OpenAI's messages, command-line flags) into it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from agent_server.core.decoding import Sampling
from agent_server.core.engine import Engine, Plan
from agent_server.core.events import Event
from agent_server.errors import BadRequest
from agent_server.webgpt.agent import WebGPT

Mode = Literal["toolformer", "webgpt"]


@dataclass(frozen=True)
class AnswerRequest:
    """A question and how to answer it; None leaves a choice to the service's settings."""

    question: str
    mode: Mode = "toolformer"
    strategy: str | None = None
    samples: int | None = None
    tools: Sequence[str] | None = None
    max_calls: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    # The conversation's earlier (question, answer) turns, oldest first (toolformer mode: WebGPT
    # browses a question on its own, its sources are the context).
    history: Sequence[tuple[str, str]] = ()

    def __post_init__(self) -> None:
        options = (self.tools, self.max_calls, self.strategy, self.samples)
        if self.mode == "webgpt" and any(option is not None for option in options):
            raise BadRequest(
                "tools, max_calls, strategy and samples apply to mode 'toolformer'; webgpt mode "
                "browses"
            )


def plan(request: AnswerRequest, engine: Engine) -> Plan | None:
    """How the engine will answer (None in WebGPT mode); `BadRequest` for an unknown tool or
    strategy, before any work is done."""
    if request.mode == "webgpt":
        return None
    return engine.plan(
        request.question,
        strategy=request.strategy,
        samples=request.samples,
        sampling=request.sampling,
        tools=_tools(request),
        max_calls=request.max_calls,
    )


def answer(
    request: AnswerRequest, engine: Engine, webgpt: WebGPT | None
) -> AsyncGenerator[Event, None]:
    """The answer's events, the last a `FinalEvent`."""
    if request.mode == "webgpt":
        if webgpt is None:
            raise BadRequest("webgpt mode is not available here")
        return webgpt.stream(request.question, sampling=request.sampling)
    return engine.stream(
        request.question,
        strategy=request.strategy,
        samples=request.samples,
        sampling=request.sampling,
        tools=_tools(request),
        max_calls=request.max_calls,
        history=request.history,
    )


def _tools(request: AnswerRequest) -> list[str] | None:
    return None if request.tools is None else list(request.tools)
