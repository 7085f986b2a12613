"""One request, one path: an `AnswerRequest` is answered by the engine or, in WebGPT mode, by
browsing. Both HTTP routes, the CLI and the evals build the request and call `answer`; each of
them only translates its own input (a JSON body, OpenAI's messages, command-line flags) into it.

A request may bring the client's own functions (OpenAI's `tools`): the model calls them inline
like the service's tools, and a call to one ends the answer (`FinalEvent.client_call`) for the
client to run; its result comes back as `continuation`, the answer so far with the result
spliced in, and the model goes on from there.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent_server.core.decoding import Sampling
from agent_server.core.engine import Engine, Plan
from agent_server.core.events import Event
from agent_server.core.structured import AnswerFormat
from agent_server.errors import BadRequest
from agent_server.webgpt.agent import WebGPT
from tools.base import NoWarmUp, ToolError
from tools.json_args import describe_fields, example_arguments

Mode = Literal["toolformer", "webgpt"]
# Whether the model may call the client's functions ("auto"), must call one ("required"), or
# gets none ("none"); `AnswerRequest.forced` names the one it must call.
ToolChoice = Literal["auto", "none", "required"]


@dataclass(frozen=True)
class Function:
    """One of the client's functions: a name, what it does, its arguments' JSON Schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


class ClientFunction(NoWarmUp):
    """A client's function as an inline tool: described to the model like the service's own;
    never run here (the engine ends the answer at its call)."""

    def __init__(self, function: Function) -> None:
        self.name = function.name
        fields = describe_fields(function.parameters)
        what = function.description.strip() or f"the client's function {function.name}"
        self.description = f"{what} (arguments: a JSON object {{{fields}}})"
        self.example = json.dumps(example_arguments(function.parameters), ensure_ascii=False)
        self.parameters = function.parameters

    async def __call__(self, argument: str) -> str:
        # Never asked: the engine ends the answer at the call (`Plan.client`).
        raise ToolError(f"{self.name}({argument}) is the client's to run")


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
    functions: Sequence[Function] = ()
    tool_choice: ToolChoice = "auto"
    forced: str | None = None  # the function the model must call
    continuation: str = ""  # the answer so far, the client's calls and results spliced in
    answer_format: AnswerFormat | None = None  # the JSON the answer must be

    def __post_init__(self) -> None:
        options = (self.tools, self.max_calls, self.strategy, self.samples)
        if self.mode == "webgpt" and any(option is not None for option in options):
            raise BadRequest(
                "tools, max_calls, strategy and samples apply to mode 'toolformer'; webgpt mode "
                "browses"
            )
        if self.mode == "webgpt" and (self.functions or self.answer_format is not None):
            raise BadRequest("functions and JSON answers apply to mode 'toolformer'")
        names = [f.name for f in self.functions]
        if self.forced is not None and self.forced not in names:
            raise BadRequest(f"tool_choice names {self.forced!r}, which is not among the tools")


@dataclass(frozen=True)
class _EngineOptions:
    tools: list[str] | None
    functions: tuple[ClientFunction, ...]
    prefill: str


def _options(request: AnswerRequest) -> _EngineOptions:
    """What the engine is given: a required call is opened for the model (`[`, or `[name(` for
    a named function), with only the client's functions to choose from."""
    tools = None if request.tools is None else list(request.tools)
    offered = () if request.tool_choice == "none" else request.functions
    if request.forced is not None:
        offered = tuple(f for f in offered if f.name == request.forced)
    functions = tuple(ClientFunction(f) for f in offered)
    prefill = ""
    if functions and not request.continuation:
        if request.forced is not None:
            tools, prefill = [], f"[{request.forced}("
        elif request.tool_choice == "required":
            tools, prefill = [], "["
    return _EngineOptions(tools, functions, prefill)


def plan(request: AnswerRequest, engine: Engine) -> Plan | None:
    """How the engine will answer (None in WebGPT mode); `BadRequest` for an unknown tool or
    strategy, before any work is done."""
    if request.mode == "webgpt":
        return None
    options = _options(request)
    return engine.plan(
        request.question,
        strategy=request.strategy,
        samples=request.samples,
        sampling=request.sampling,
        tools=options.tools,
        max_calls=request.max_calls,
        functions=options.functions,
        continuation=request.continuation,
        prefill=options.prefill,
        answer_format=request.answer_format,
    )


def answer(
    request: AnswerRequest, engine: Engine, webgpt: WebGPT | None, made: Plan | None = None
) -> AsyncGenerator[Event, None]:
    """The answer's events, the last a `FinalEvent` (`made`: the request's `plan`, if the
    caller made it already)."""
    if request.mode == "webgpt":
        if webgpt is None:
            raise BadRequest("webgpt mode is not available here")
        return webgpt.stream(request.question, sampling=request.sampling)
    made = made or plan(request, engine)
    assert made is not None  # (toolformer mode)
    return engine.follow(made, request.history)
