"""Bodies of the OpenAI-compatible routes, and what a chat request must mean to be answered.

Requests accept what OpenAI's clients send and ignore unknown fields (clients send many). The
responses are OpenAI's shapes plus one extra field, `agent`, which plain clients ignore: the
generated text with its calls, the trace and the timings (on a stream: each call and result as
it happens, and that summary on the last chunk).

What a chat means here (`ChatRequest.conversation`): the last message is the user's question,
earlier user/assistant turns are the history, and a system or developer message is ignored,
because the service's own prompt defines the tools and how to call them; after the question
may come the assistant's calls of the client's functions and the `tool` messages with their
results (`openai_tools`). OpenAI's old `functions` and non-text content are refused.

Long (over 300 lines) because OpenAI's request and response shapes are many small models, and what a
chat means (`conversation`) belongs with the request that carries it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_server.answering import AnswerRequest
from agent_server.core.decoding import Sampling
from agent_server.core.events import FinalEvent, ResultEvent, StopReason
from agent_server.core.strategies import MAX_SAMPLES, StrategyChoice
from agent_server.core.structured import AnswerFormat
from agent_server.errors import InvalidRequest
from agent_server.http import openai_tools
from agent_server.http.openai_tools import (
    FunctionTool,
    NamedToolChoice,
    ResponseFormat,
    ToolCall,
    ToolCallDelta,
)
from agent_server.http.schemas import (
    SAMPLES_HELP,
    STRATEGY_HELP,
    AskRequest,
    AskResponse,
    CallItem,
    TraceItem,
)

FinishReason = Literal["stop", "length", "tool_calls"]
ALIAS = "agent-server"  # a model name every client may use for whatever model is served
_SKIPPED_ROLES = ("system", "developer")


def _none(value: object) -> bool:
    return value is None


# -- requests -------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, refusal, …: checked below

    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class AgentOptions(BaseModel):
    """This service's own request extension (`extra_body={"agent": {...}}` in OpenAI's client)."""

    model_config = ConfigDict(extra="forbid")

    tools: list[str] | None = Field(None, description="the server's tools to allow; default: all")
    max_calls: int | None = Field(None, ge=0, le=20)
    strategy: StrategyChoice | None = Field(None, description=STRATEGY_HELP)
    samples: int | None = Field(None, ge=1, le=MAX_SAMPLES, description=SAMPLES_HELP)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage]
    model: str | None = None
    # Unset, decoding follows the service (greedy), not OpenAI's default of 1: the small models
    # served here answer best greedy.
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=4_096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4_096)
    stop: str | list[str] | None = Field(None, description="up to 4 stop strings")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)  # what numpy's generator takes
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    tools: list[FunctionTool] | None = None  # the client's functions (OpenAI's function calling)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # accepted; one call ends each answer here
    functions: list[Any] | None = None
    response_format: ResponseFormat | None = None
    agent: AgentOptions | None = None

    def check(self) -> None:
        """Refuse what this service cannot honour, naming the field."""
        if self.n not in (None, 1):
            raise InvalidRequest(f"n={self.n} is not supported: one choice per request", "n")
        if self.functions:
            raise InvalidRequest("functions is OpenAI's old form: send tools instead", "functions")
        if len(self.stop_strings()) > 4:
            raise InvalidRequest("stop takes at most 4 strings", "stop")

    def answer_request(self, max_new_tokens: int | None) -> AnswerRequest:
        """The request to answer, after `check` (`max_new_tokens`: the service's budget, unless
        the body sets one)."""
        question, history, so_far = self.conversation()
        tool_choice, forced = openai_tools.choice(self.tool_choice)
        sampling = Sampling(
            temperature=self.temperature or 0.0,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            stop=self.stop_strings(),
            max_new_tokens=self.max_completion_tokens or self.max_tokens or max_new_tokens,
        )
        agent = self.agent
        return AnswerRequest(
            question,
            strategy=agent.strategy if agent else None,
            samples=agent.samples if agent else None,
            tools=agent.tools if agent else None,
            max_calls=agent.max_calls if agent else None,
            sampling=sampling,
            history=history,
            functions=openai_tools.functions(self.tools),
            tool_choice=tool_choice,
            forced=forced,
            continuation=so_far,
            answer_format=self.answer_format(),
        )

    def answer_format(self) -> AnswerFormat | None:
        form = self.response_format
        if form is None:
            return None
        where = "response_format.json_schema"
        return openai_tools.answer_format(form.type, form.json_schema, where)

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return tuple(s for s in stops if s)

    def conversation(self) -> tuple[str, list[tuple[str, str]], str]:
        """The question (the last user turn), the (user, assistant) turns before it, and the
        answer so far after it (the client's function calls with their results)."""
        if not self.messages:
            raise InvalidRequest("messages must not be empty", "messages")
        users = [i for i, m in enumerate(self.messages) if m.role == "user"]
        calls_from = users[-1] + 1 if users else len(self.messages)
        after = self.messages[calls_from:]
        so_far = ""
        if after and after[-1].role == "tool":  # the client sends its functions' results
            so_far = openai_tools.continuation(self.messages, calls_from)
        else:
            calls_from = len(self.messages)
        turns: list[tuple[str, str]] = []  # (role, text), consecutive turns of a role joined
        for i, message in enumerate(self.messages[:calls_from]):
            if message.role in _SKIPPED_ROLES or message.role == "tool":
                continue  # an earlier turn's tool results: its answer holds what came of them
            text = _text_of(message, f"messages[{i}]")
            if turns and turns[-1][0] == message.role:
                turns[-1] = (message.role, f"{turns[-1][1]}\n{text}")
            else:
                turns.append((message.role, text))
        if not turns or turns[-1][0] != "user":
            last = self.messages[calls_from - 1].role if calls_from else "none"
            raise InvalidRequest(
                f"the last message must be from the user (got {last!r})",
                f"messages[{len(self.messages) - 1}].role",
            )
        question = turns.pop()[1].strip()
        if not question:
            raise InvalidRequest("the last user message is empty", "messages")
        try:  # the native API's limits on a question hold here too
            AskRequest.model_validate({"question": question})
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise InvalidRequest(f"the last user message: {problem}", "messages") from exc
        if turns and turns[0][0] == "assistant":
            turns.insert(0, ("user", ""))
        history = [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns), 2)]
        return question, history, so_far


def _text_of(message: ChatMessage, where: str) -> str:
    if message.role not in ("user", "assistant"):
        raise InvalidRequest(
            f"{where}: role {message.role!r} is not supported (roles: system, developer, user, "
            "assistant, tool)",
            f"{where}.role",
        )
    if message.content is None:
        if message.role == "assistant":
            return ""
        raise InvalidRequest(f"{where}: content is missing", f"{where}.content")
    if isinstance(message.content, str):
        return message.content
    texts = []
    for j, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise InvalidRequest(
                f"{where}.content[{j}]: content of type {part.type!r} is not supported; only text",
                f"{where}.content[{j}].type",
            )
        texts.append(part.text)
    return "\n".join(texts)


# -- responses ------------------------------------------------------------------------------


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "agent-server"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def finish_reason(final: FinalEvent) -> FinishReason:
    if final.stop_reason in ("length", "tool_calls"):
        return final.stop_reason
    return "stop"


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int  # written by the model; tool results count in agent.spliced_tokens
    total_tokens: int

    @classmethod
    def from_final(cls, final: FinalEvent) -> CompletionUsage:
        prompt, completion = final.usage.prompt_tokens, final.usage.completion_tokens
        return cls(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


class AgentSummary(BaseModel):
    """The `agent` extra of a completion (and of a stream's last chunk)."""

    text: str  # as generated, calls and their results spliced in
    trace: list[TraceItem]
    timings: dict[str, float]
    stop_reason: StopReason
    spliced_tokens: int

    @classmethod
    def from_final(cls, final: FinalEvent) -> AgentSummary:
        native = AskResponse.from_final(final, model="")  # the native API's trace and timings
        return cls(
            text=native.text,
            trace=native.trace,
            timings=native.timings,
            stop_reason=native.stop_reason,
            spliced_tokens=final.usage.spliced_tokens,
        )


class ResultInfo(TraceItem):
    index: int

    @classmethod
    def from_event(cls, event: ResultEvent) -> ResultInfo:
        return cls(index=event.index, **TraceItem.from_event(event).model_dump())


class AgentEvent(BaseModel):
    """The `agent` extra of a stream chunk that reports a call or its result."""

    call: CallItem | None = Field(default=None, exclude_if=_none)
    result: ResultInfo | None = Field(default=None, exclude_if=_none)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = Field(default=None, exclude_if=_none)


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=new_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    agent: AgentSummary

    @classmethod
    def from_final(cls, final: FinalEvent, model: str) -> ChatCompletion:
        call = final.client_call
        message = AssistantMessage(
            content=final.answer or (None if call else ""),
            tool_calls=None if call is None else [ToolCall.from_call(call)],
        )
        return cls(
            model=model,
            choices=[Choice(message=message, finish_reason=finish_reason(final))],
            usage=CompletionUsage.from_final(final),
            agent=AgentSummary.from_final(final),
        )


class Delta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, exclude_if=_none)
    content: str | None = Field(default=None, exclude_if=_none)
    # While several answers are written (samples, a consensus's members) and the content waits
    # for their vote: the first one, as it is written (the field DeepSeek's API, vLLM and
    # llama-server stream a model's reasoning in, which chat clients show as such).
    reasoning_content: str | None = Field(default=None, exclude_if=_none)
    tool_calls: list[ToolCallDelta] | None = Field(default=None, exclude_if=_none)


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = Field(default=None, exclude_if=_none)
    agent: AgentSummary | AgentEvent | None = Field(default=None, exclude_if=_none)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
