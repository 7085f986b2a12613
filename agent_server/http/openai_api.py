"""OpenAI-compatible routes: `POST /v1/chat/completions`, `GET /v1/models[/{model}]`.

OpenAI's clients work unchanged; `agent_server.http.openai_schemas` says what a chat means here.
Streamed `content` is the reader's answer only, exactly the non-streamed `message.content`:
call syntax never reaches it (the engine's `AnswerEvent`s). Calls and results travel on their
own chunks, with an empty delta and an `agent` extra (`{"call": …}`, then `{"result": …}`); the
last chunk carries the finish reason and the `agent` summary (text with calls, trace, timings).
When several answers are written before a vote (samples, a consensus's members), the first of
them streams as `reasoning_content` meanwhile, so a chat client shows work at once.

Errors come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, validation
errors included (as 400, OpenAI's status for them), via this router's route class; an error
after a stream has begun is one `data: {"error": …}` event, then `data: [DONE]`. A client that
disconnects mid-stream stops its answer: the stream's generator is closed, and with it the
engine's. Answers wait for a model slot (`Admission`: 429 when the queue is full) and are held
to `request_timeout_s` (504, or a `timeout` error event once streaming). A stream's slot, queue
wait and first event come before its 200, so a refused request is an HTTP error, not an event.

Left out: n > 1, logprobs, client-side tools and function calling, images, penalties and
logit_bias (ignored, like any unknown field), the legacy `/v1/completions`, and stopping a
non-streamed answer whose client has gone (it runs to its end or its time limit).

Long (over 300 lines) because the chat route, its stream and the answering it shares with the
Responses API keep one admission and time-limit path.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from agent_server import answering
from agent_server.core.engine import Engine, final_event
from agent_server.core.events import (
    AnswerEvent,
    CallEvent,
    ClientCall,
    Event,
    FinalEvent,
    ResultEvent,
    TokenEvent,
)
from agent_server.errors import AgentError, InvalidRequest, RequestTimeout
from agent_server.http.admission import Admission
from agent_server.http.deps import AdmissionDep, EngineDep, MetricsDep, SettingsDep
from agent_server.http.openai_schemas import (
    ALIAS,
    AgentEvent,
    AgentSummary,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    ChunkChoice,
    CompletionUsage,
    Delta,
    ErrorDetail,
    ErrorResponse,
    FinishReason,
    ModelCard,
    ModelList,
    ResultInfo,
    finish_reason,
    new_id,
    now,
)
from agent_server.http.openai_tools import ToolCall, ToolCallDelta
from agent_server.http.schemas import CallItem
from agent_server.settings import Settings

log = logging.getLogger(__name__)
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|none|\w+\[.*\])$")
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class OpenAIRoute(APIRoute):
    """A route whose every error, validation included, is in OpenAI's shape."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                first = exc.errors()[0]
                if first.get("type") == "json_invalid":
                    return _error(400, "the body is not valid JSON")
                param = _param(first.get("loc", ()))
                return _error(400, f"{param or 'body'}: {first.get('msg', 'invalid')}", param)
            except AgentError as exc:
                return _error(exc.status, str(exc), exc.param, exc.code, exc.kind, exc.headers)
            except Exception:  # a bug of ours: logged with its traceback, answered in shape
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(500, "internal server error", kind="server_error")

        return handle


router = APIRouter(route_class=OpenAIRoute)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 429, 503, 504)
}


@router.get("/v1/models", responses=_ERRORS)
async def list_models(engine: EngineDep) -> ModelList:
    return ModelList(data=[ModelCard(id=engine.backend.name)])


@router.get("/v1/models/{model}", responses=_ERRORS)
async def get_model(model: str, engine: EngineDep) -> ModelCard:
    return ModelCard(id=served(model, engine))


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={200: {"model": ChatCompletion, "content": {"text/event-stream": {}}}, **_ERRORS},
)
async def chat_completions(
    body: ChatRequest,
    engine: EngineDep,
    settings: SettingsDep,
    admission: AdmissionDep,
    metrics: MetricsDep,
) -> Response:
    model = served(body.model, engine)
    body.check()
    if not body.stream:
        final = await answer_whole(body, engine, settings, admission)
        metrics.observe_final(final)
        return JSONResponse(ChatCompletion.from_final(final, model).model_dump(mode="json"))
    first, events, limit, stream_class = await started(body, engine, settings, admission)
    usage = bool(body.stream_options and body.stream_options.include_usage)
    client = frozenset(t.function.name for t in body.tools or ())
    chunks = _chunks(first, events, model, usage, client, limit, metrics.observe_final)
    return stream_class(chunks)


# -- answering (shared with the Responses API) -----------------------------------------------


def _events(body: ChatRequest, engine: Engine, settings: Settings) -> AsyncGenerator[Event, None]:
    asked = body.answer_request(settings.max_new_tokens)
    # Planned at once: an unknown tool or strategy is a 400 before any work.
    return answering.answer(asked, engine, None)


async def answer_whole(
    body: ChatRequest, engine: Engine, settings: Settings, admission: Admission
) -> FinalEvent:
    """The whole answer, within a queue slot and the time limit."""
    events = _events(body, engine, settings)
    try:
        async with admission.limit(settings.request_timeout_s), admission.slot():
            return await final_event(events)
    finally:
        await events.aclose()


async def started(
    body: ChatRequest, engine: Engine, settings: Settings, admission: Admission
) -> tuple[
    Event,
    AsyncGenerator[Event, None],
    tuple[float, float],
    Callable[[AsyncGenerator[str, None]], EventStream],
]:
    """An answer begun in a queue slot: its first event, the rest, the time limit (deadline and
    seconds) and how to stream a body made from them (the slot held until that stream ends)."""
    events = _events(body, engine, settings)
    timeout_s = settings.request_timeout_s
    deadline = asyncio.get_running_loop().time() + timeout_s
    held = AsyncExitStack()  # the model slot and the engine's generator, until the stream ends
    try:
        async with admission.limit(timeout_s):
            await held.enter_async_context(admission.slot())
            held.push_async_callback(events.aclose)
            # Awaited before the 200, so a request the engine refuses (an unknown tool), a full
            # queue or a time-out is still an HTTP error.
            first = await anext(events)
    except BaseException:
        await held.aclose()
        await events.aclose()  # not started if no slot was won
        raise
    return first, events, (deadline, timeout_s), lambda stream: EventStream(stream, held)


# -- streaming ------------------------------------------------------------------------------


class EventStream(StreamingResponse):
    """Server-Sent Events that release what the answer holds however the stream ends.

    Starlette cancels the body when the client disconnects; closing the body and `held` here
    as well covers a body cancelled while it waited to send, and one that never started.
    """

    def __init__(self, body: AsyncGenerator[str, None], held: AsyncExitStack) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(body, media_type="text/event-stream", headers=headers)
        self._body = body
        self._held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._body.aclose()
            await self._held.aclose()


async def _chunks(
    first: Event,
    events: AsyncIterator[Event],
    model: str,
    include_usage: bool,
    client: frozenset[str],
    limit: tuple[float, float],
    on_final: Callable[[FinalEvent], None],
) -> AsyncGenerator[str, None]:
    """OpenAI's chunks: content as the reader's answer grows, a call to one of the client's
    functions as `tool_calls` (id, type and name first, then the arguments), the finish."""
    ident, created = new_id(), now()

    def chunk(
        delta: Delta | None = None,
        finish: FinishReason | None = None,
        agent: AgentSummary | AgentEvent | None = None,
        usage: CompletionUsage | None = None,
    ) -> str:
        # OpenAI's usage chunk comes last and has no choices.
        choices = [] if usage else [ChunkChoice(delta=delta or Delta(), finish_reason=finish)]
        data = ChatCompletionChunk(
            id=ident, created=created, model=model, choices=choices, usage=usage, agent=agent
        )
        return f"data: {data.model_dump_json()}\n\n"

    try:
        yield chunk(Delta(role="assistant", content=""))
        event: Event | None = first
        drafting: int | None = None  # the sample streamed as reasoning until the vote
        while event is not None:
            if isinstance(event, AnswerEvent):
                yield chunk(Delta(content=event.text))
            elif isinstance(event, TokenEvent) and event.sample is not None:
                drafting = event.sample if drafting is None else drafting
                if event.sample == drafting:
                    yield chunk(Delta(reasoning_content=event.text))
            elif isinstance(event, CallEvent) and event.tool in client:
                call = ToolCall.from_call(ClientCall(event.tool, event.argument))
                named = {"name": call.function.name, "arguments": ""}
                yield chunk(
                    Delta(tool_calls=[ToolCallDelta(id=call.id, type="function", function=named)])
                )
                arguments = {"arguments": call.function.arguments}
                yield chunk(Delta(tool_calls=[ToolCallDelta(function=arguments)]))
            elif isinstance(event, CallEvent):
                yield chunk(agent=AgentEvent(call=CallItem.from_event(event)))
            elif isinstance(event, ResultEvent):
                yield chunk(agent=AgentEvent(result=ResultInfo.from_event(event)))
            elif isinstance(event, FinalEvent):
                on_final(event)
                agent = AgentSummary.from_final(event)
                yield chunk(finish=finish_reason(event), agent=agent)
                if include_usage:
                    yield chunk(usage=CompletionUsage.from_final(event))
                break
            event = await next_before(events, *limit)
    except RequestTimeout as exc:
        detail = ErrorDetail(message=str(exc), type="timeout")
        yield f"data: {ErrorResponse(error=detail).model_dump_json()}\n\n"
    except Exception as exc:  # the 200 is sent: say what went wrong in the stream itself
        log.exception("chat completion stream failed")
        detail = ErrorDetail(message=f"{type(exc).__name__}: {exc}", type="server_error")
        yield f"data: {ErrorResponse(error=detail).model_dump_json()}\n\n"
    yield "data: [DONE]\n\n"


async def next_before(
    events: AsyncIterator[Event], deadline: float, timeout_s: float
) -> Event | None:
    # A time limit per step, never across a `yield`: one held open there would cancel
    # Starlette's sending instead of this wait.
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(events, None)
    except TimeoutError as exc:
        raise RequestTimeout(
            f"the answer took longer than its limit of {timeout_s:g} s (request_timeout_s)"
        ) from exc


# -- pieces ---------------------------------------------------------------------------------


def served(requested: str | None, engine: Engine) -> str:
    name = engine.backend.name
    if requested not in (None, "", name, ALIAS):
        raise InvalidRequest(
            f"The model {requested!r} does not exist; this server serves {name!r} "
            f"(also called {ALIAS!r})",
            "model",
            "model_not_found",
            status=404,
        )
    return name


def _param(loc: Any) -> str | None:
    # pydantic adds the union member it tried (`str`, `list[ContentPart]`): not a field.
    parts = [p for p in loc if p != "body" and not _UNION_MEMBER.match(str(p))]
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or None


def _error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)
