"""OpenAI's Responses API (`POST /v1/responses`) for text in and text out, plain and streamed.

The request becomes the same `AnswerRequest` as a chat completion's (its `input` read as chat
messages; `input_text`/`output_text` parts as text), so it answers exactly as
`/v1/chat/completions` does, with the same admission, time limit and errors in OpenAI's shape.
Streamed, it sends Responses' semantic events (`response.created`, `response.output_text.delta`,
…, `response.completed`, each with its `sequence_number`; no `[DONE]`). The trace rides along
as this service's `agent` field, as on the chat route.

Left out: function tools (a 400 naming `tools`), `previous_response_id` (nothing is stored),
`instructions` (the strategy's prompt is the system prompt, as with a chat's system message).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from agent_server.core.events import AnswerEvent, Event, FinalEvent
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

log = logging.getLogger(__name__)
router = APIRouter(route_class=OpenAIRoute)
_TEXT_PARTS = ("input_text", "output_text", "text")


class InputPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["message"] = "message"
    role: str
    content: str | list[InputPart]


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[InputMessage]
    model: str | None = None
    instructions: str | None = None
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1, le=4_096)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    tools: list[Any] | None = None
    agent: AgentOptions | None = None

    def as_chat(self) -> ChatRequest:
        """The same request as a chat completion's (which then checks the conversation)."""
        if self.tools:
            raise InvalidRequest("function tools are not supported on /v1/responses yet", "tools")
        messages = (
            [ChatMessage(role="user", content=self.input)]
            if isinstance(self.input, str)
            else [
                ChatMessage(role=m.role, content=_content(m, i)) for i, m in enumerate(self.input)
            ]
        )
        return ChatRequest.model_validate(
            {
                "messages": messages,
                "model": self.model,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_tokens": self.max_output_tokens,
                "agent": self.agent,
            }
        )


def _content(message: InputMessage, index: int) -> str | list[ContentPart]:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for j, part in enumerate(message.content):
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
    chat = body.as_chat()
    chat.check()
    ident, created = f"resp_{uuid.uuid4().hex}", now()
    if not body.stream:
        final = await answer_whole(chat, engine, settings, admission)
        metrics.observe_final(final)
        return JSONResponse(_response(final, ident, created, model, body))
    first, rest, limit, stream_class = await started(chat, engine, settings, admission)
    events = _events(first, rest, limit, (ident, created, model, body), metrics.observe_final)
    return stream_class(events)


def _response(
    final: FinalEvent | None,
    ident: str,
    created: int,
    model: str,
    body: ResponsesRequest,
) -> dict[str, Any]:
    """A Response object: in progress (no final yet) or finished with its one message."""
    status = "in_progress" if final is None else _status(final)
    output = [] if final is None else [_message(ident, final.answer, "completed")]
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
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
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


def _status(final: FinalEvent) -> str:
    return "incomplete" if final.stop_reason == "length" else "completed"


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
    on_final: Callable[[FinalEvent], None],
) -> AsyncGenerator[str, None]:
    ident, created, model, body = about
    item = f"msg_{ident.removeprefix('resp_')}"
    sequence = 0

    def sse(kind: str, **data: Any) -> str:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **data}
        sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"

    where = {"item_id": item, "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": []}
    try:
        opened = _response(None, ident, created, model, body)
        yield sse("response.created", response=opened)
        yield sse("response.in_progress", response=opened)
        yield sse(
            "response.output_item.added", output_index=0, item=_message(ident, "", "in_progress")
        )
        yield sse("response.content_part.added", part=empty_part, **where)
        event: Event | None = first
        while event is not None:
            if isinstance(event, AnswerEvent):
                yield sse("response.output_text.delta", delta=event.text, logprobs=[], **where)
            elif isinstance(event, FinalEvent):
                on_final(event)
                done = _message(ident, event.answer, "completed")
                yield sse("response.output_text.done", text=event.answer, logprobs=[], **where)
                yield sse("response.content_part.done", part=done["content"][0], **where)
                yield sse("response.output_item.done", output_index=0, item=done)
                finished = _response(event, ident, created, model, body)
                yield sse(f"response.{finished['status']}", response=finished)
                return
            event = await next_before(events, *limit)
    except RequestTimeout as exc:
        yield sse("error", code="timeout", message=str(exc), param=None)
    except Exception as exc:  # the 200 is sent: say what went wrong in the stream itself
        log.exception("response stream failed")
        yield sse("error", code="server_error", message=f"{type(exc).__name__}: {exc}", param=None)
