"""OpenAI's Responses API (`POST /v1/responses`): text in, text (or JSON) and function calls
out, plain and streamed.

The request becomes the same `ChatRequest` as a chat completion's (its `input` items read as
chat messages: `input_text`/`output_text` parts as text, a `function_call` item as the
assistant's call, a `function_call_output` as its `tool` message; its flat function `tools`,
`tool_choice` and `text.format` as the chat's), so it answers exactly as `/v1/chat/completions`
does, with the same admission, time limit and errors in OpenAI's shape. The output is a
`message` item with the answer's text (when it has any) and a `function_call` item when the
model called one of the client's functions. Streamed, it sends Responses' semantic events
(`response.created`, `response.output_text.delta`, `response.function_call_arguments.delta`, …,
`response.completed`, each with its `sequence_number`; no `[DONE]`). The trace rides along as
this service's `agent` field, as on the chat route.

Left out: `previous_response_id` (nothing is stored) and `instructions` (the strategy's prompt is
the system prompt, as with a chat's system message).

Long (over 300 lines) because Responses' request items, output items and semantic stream events are
one API's shapes, each mapped to the chat request underneath.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_server.core.events import AnswerEvent, CallEvent, ClientCall, Event, FinalEvent
from agent_server.errors import InvalidRequest, RequestTimeout
from agent_server.http.deps import AdmissionDep, EngineDep, MetricsDep, SettingsDep
from agent_server.http.openai_api import OpenAIRoute, answer_whole, next_before, served, started
from agent_server.http.openai_schemas import (
    AgentOptions,
    AgentSummary,
    ChatMessage,
    ChatRequest,
    ContentPart,
    now,
)
from agent_server.http.openai_tools import FunctionSpec, JsonSchemaFormat, ToolCall

log = logging.getLogger(__name__)
router = APIRouter(route_class=OpenAIRoute)
_TEXT_PARTS = ("input_text", "output_text", "text")


class InputPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class InputItem(BaseModel):
    """One item of `input`: a message (the default type), or a function call and its output."""

    model_config = ConfigDict(extra="allow")

    type: Literal["message", "function_call", "function_call_output"] = "message"
    role: str | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class ResponseTool(FunctionSpec):
    """A function tool, Responses' flat shape: the chat's function spec with `type` beside it."""

    type: Literal["function"]


class NamedTool(BaseModel):
    type: Literal["function"]
    name: str


class TextFormat(JsonSchemaFormat):
    """`text.format`: Responses' `response_format`, the schema's fields beside `type`."""

    type: Literal["text", "json_object", "json_schema"] = "text"


class TextOptions(BaseModel):
    format: TextFormat = Field(default_factory=lambda: TextFormat())


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[InputItem]
    model: str | None = None
    instructions: str | None = None
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1, le=4_096)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    tools: list[ResponseTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedTool | None = None
    parallel_tool_calls: bool | None = None  # accepted; one call ends each answer here
    text: TextOptions | None = None
    agent: AgentOptions | None = None

    def as_chat(self) -> tuple[ChatRequest, list[int]]:
        """The same request as a chat completion's (which then checks the conversation), and
        the `input` item each of its messages came from."""
        messages, origin = (
            ([ChatMessage(role="user", content=self.input)], [0])
            if isinstance(self.input, str)
            else _messages(self.input)
        )
        choice = self.tool_choice
        form = self.text.format if self.text else None
        chat = _validated(
            origin,
            {
                "messages": messages,
                "model": self.model,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_tokens": self.max_output_tokens,
                "tools": [
                    {"type": "function", "function": t.model_dump(exclude={"type"})}
                    for t in self.tools or ()
                ]
                or None,
                "tool_choice": (
                    {"type": "function", "function": {"name": choice.name}}
                    if isinstance(choice, NamedTool)
                    else choice
                ),
                "response_format": None
                if form is None
                else {
                    "type": form.type,
                    "json_schema": form.model_dump(by_alias=True, exclude={"type"}),
                },
                "agent": self.agent,
            },
        )
        return chat, origin


def _validated(origin: list[int], body: dict[str, Any]) -> ChatRequest:
    """The chat request; what it refuses is the client's to fix (each field was checked as
    this request's already, so this is a safety net), never a server error."""
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem["loc"])
        refused = InvalidRequest(f"{where[1:]}: {problem['msg']}", where[1:])
        raise _in_responses_terms(refused, origin) from None


def _messages(items: list[InputItem]) -> tuple[list[ChatMessage], list[int]]:
    """The input items as chat messages: a run of function calls is one assistant message with
    their `tool_calls`, each output a `tool` message; and the item each message came from."""
    messages: list[ChatMessage] = []
    origin: list[int] = []
    for i, item in enumerate(items):
        if item.type == "message":
            if item.role is None or item.content is None:
                raise InvalidRequest(
                    f"input[{i}]: a message needs a role and content", f"input[{i}]"
                )
            messages.append(ChatMessage(role=item.role, content=_content(item, i)))
            origin.append(i)
            continue
        if item.call_id is None:
            raise InvalidRequest(
                f"input[{i}]: a {item.type} needs its call_id", f"input[{i}].call_id"
            )
        if item.type == "function_call":
            if item.name is None:
                raise InvalidRequest(
                    f"input[{i}]: a function_call needs its name", f"input[{i}].name"
                )
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments or "{}"},
            }
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.model_extra:
                last.model_extra["tool_calls"].append(call)
            else:
                messages.append(
                    ChatMessage.model_validate(
                        {"role": "assistant", "content": "", "tool_calls": [call]}
                    )
                )
                origin.append(i)
        else:
            output = {"role": "tool", "content": item.output or "", "tool_call_id": item.call_id}
            messages.append(ChatMessage.model_validate(output))
            origin.append(i)
    return messages, origin


def _in_responses_terms(exc: InvalidRequest, origin: list[int]) -> InvalidRequest:
    """A chat request's error, its fields named as this request has them."""

    def item(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"input[{origin[index] if index < len(origin) else index}]"

    def renamed(text: str) -> str:
        text = re.sub(r"tools\[(\d+)\]\.function\.", r"tools[\1].", text)
        text = text.replace("response_format.json_schema", "text.format")
        return re.sub(r"messages\[(\d+)\]", item, text).replace("messages", "input")

    param = renamed(exc.param) if exc.param else None
    return InvalidRequest(renamed(str(exc)), param, exc.code, exc.status)


def _content(message: InputItem, index: int) -> str | list[ContentPart]:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for j, part in enumerate(message.content or ()):
        if part.type not in _TEXT_PARTS:
            raise InvalidRequest(
                f"type {part.type!r} is not supported: text only", f"input[{index}].content[{j}]"
            )
        parts.append(ContentPart(type="text", text=part.text))
    return parts


@router.post("/v1/responses", response_model=None)
async def create_response(
    body: ResponsesRequest,
    engine: EngineDep,
    settings: SettingsDep,
    admission: AdmissionDep,
    metrics: MetricsDep,
) -> Response:
    model = served(body.model, engine)
    chat, origin = body.as_chat()
    ident, created = f"resp_{uuid.uuid4().hex}", now()
    try:
        chat.check()
        if not body.stream:
            final = await answer_whole(chat, engine, settings, admission)
            metrics.observe_final(final)
            return JSONResponse(_response(final, ident, created, model, body))
        first, rest, limit, stream_class = await started(chat, engine, settings, admission)
    except InvalidRequest as exc:
        raise _in_responses_terms(exc, origin) from exc
    client = frozenset(t.name for t in body.tools or ())
    about = (ident, created, model, body)
    return stream_class(_events(first, rest, limit, about, client, metrics.observe_final))


def _response(
    final: FinalEvent | None,
    ident: str,
    created: int,
    model: str,
    body: ResponsesRequest,
) -> dict[str, Any]:
    """A Response object: in progress (no final yet) or finished with its output items."""
    status = "in_progress" if final is None else _status(final)
    output: list[dict[str, Any]] = []
    if final is not None and (final.answer or final.client_call is None):
        output.append(_message(ident, final.answer, "completed"))
    if final is not None and final.client_call is not None:
        output.append(_function_call(ident, ToolCall.from_call(final.client_call), "completed"))
    tools = [t.model_dump(exclude_none=True) for t in body.tools or ()]
    form = body.text.format if body.text else None
    response: dict[str, Any] = {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": output,
        "error": None,
        "incomplete_details": None if status != "incomplete" else {"reason": "max_output_tokens"},
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "parallel_tool_calls": False,
        "tool_choice": _tool_choice(body),
        "tools": tools,
        "text": {"format": form.model_dump(by_alias=True) if form else {"type": "text"}},
        "metadata": {},
    }
    if final is not None:
        prompt, written = final.usage.prompt_tokens, final.usage.completion_tokens
        response["usage"] = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": written,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + written,
        }
        response["agent"] = AgentSummary.from_final(final).model_dump(mode="json")
    return response


def _tool_choice(body: ResponsesRequest) -> Any:
    choice = body.tool_choice
    return choice.model_dump() if isinstance(choice, NamedTool) else choice or "auto"


def _status(final: FinalEvent) -> str:
    return "incomplete" if final.stop_reason == "length" else "completed"


def _function_call(ident: str, call: ToolCall, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{ident.removeprefix('resp_')}",
        "call_id": call.id,
        "name": call.function.name,
        "arguments": call.function.arguments if status == "completed" else "",
        "status": status,
    }


def _message(ident: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {
        "type": "message",
        "id": f"msg_{ident.removeprefix('resp_')}",
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


async def _events(
    first: Event,
    events: AsyncIterator[Event],
    limit: tuple[float, float],
    about: tuple[str, int, str, ResponsesRequest],
    client: frozenset[str],
    on_final: Callable[[FinalEvent], None],
) -> AsyncGenerator[str, None]:
    """Responses' events: the message item opened with the answer's first text, a function
    call as its own item (its arguments in one delta), the finished response last."""
    ident, created, model, body = about
    sequence = 0
    items = 0  # output items opened
    text: dict[str, Any] | None = None  # where the open message item's text goes

    def sse(kind: str, **data: Any) -> str:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **data}
        sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def open_message() -> list[str]:
        nonlocal items, text
        text = {"item_id": f"msg_{ident.removeprefix('resp_')}", "output_index": items}
        text["content_index"] = 0
        added = _message(ident, "", "in_progress")
        part = {"type": "output_text", "text": "", "annotations": []}
        items += 1
        return [
            sse("response.output_item.added", output_index=text["output_index"], item=added),
            sse("response.content_part.added", part=part, **text),
        ]

    def close_message(answer: str) -> list[str]:
        assert text is not None
        done = _message(ident, answer, "completed")
        return [
            sse("response.output_text.done", text=answer, logprobs=[], **text),
            sse("response.content_part.done", part=done["content"][0], **text),
            sse("response.output_item.done", output_index=text["output_index"], item=done),
        ]

    def function_call(call: ToolCall) -> list[str]:
        nonlocal items
        index, items = items, items + 1
        item = _function_call(ident, call, "in_progress")
        where = {"item_id": item["id"], "output_index": index}
        arguments = call.function.arguments
        return [
            sse("response.output_item.added", output_index=index, item=item),
            sse("response.function_call_arguments.delta", delta=arguments, **where),
            sse("response.function_call_arguments.done", arguments=arguments, **where),
            sse(
                "response.output_item.done",
                output_index=index,
                item=_function_call(ident, call, "completed"),
            ),
        ]

    try:
        opened = _response(None, ident, created, model, body)
        yield sse("response.created", response=opened)
        yield sse("response.in_progress", response=opened)
        event: Event | None = first
        called: ToolCall | None = None
        while event is not None:
            if isinstance(event, AnswerEvent) and event.text:
                for line in open_message() if text is None else []:
                    yield line
                assert text is not None
                yield sse("response.output_text.delta", delta=event.text, logprobs=[], **text)
            elif isinstance(event, CallEvent) and event.tool in client:
                called = ToolCall.from_call(ClientCall(event.tool, event.argument))
            elif isinstance(event, FinalEvent):
                on_final(event)
                if text is None and (event.answer or called is None):
                    for line in open_message():
                        yield line
                for line in close_message(event.answer) if text is not None else []:
                    yield line
                if called is not None:
                    for line in function_call(called):
                        yield line
                finished = _response(event, ident, created, model, body)
                if called is not None:  # the same call id in the stream and the response
                    finished["output"][-1] = _function_call(ident, called, "completed")
                yield sse(f"response.{finished['status']}", response=finished)
                return
            event = await next_before(events, *limit)
    except RequestTimeout as exc:
        yield sse("error", code="timeout", message=str(exc), param=None)
    except Exception as exc:  # the 200 is sent: say what went wrong in the stream itself
        log.exception("response stream failed")
        yield sse("error", code="server_error", message=f"{type(exc).__name__}: {exc}", param=None)
