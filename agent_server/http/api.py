"""The native API's routes: ask (JSON or Server-Sent Events), tools, documents.

`POST /v1/ask` answers in one of two modes: `toolformer` (the engine's inline tool calls) or
`webgpt` (browse, quote, answer citing the quotes; `webgpt.py`). With `stream: true` it answers
with Server-Sent Events, one per event (in WebGPT mode, each browser command is a call and its
observation a result):

    event: token    {"text", "sample"}                text as the model writes it, calls included
    event: answer   {"text"}                          more of the reader's answer (no call syntax);
                                                      the texts add up to the final `answer`
    event: call     {"index", "tool", "argument", "sample"}  a call closed; its tool runs now
    event: result   {"index", "tool", "argument", "result", "error", "duration_s", "sample"}
    event: final    the whole AskResponse
    event: error    {"error": ...}                     the answer could not be finished

`sample` says which of several samples (self-consistency) wrote a token or made a call; an
answer of one sample leaves it out. With several, the `answer` text comes once, after the vote.

A client that disconnects stops its answer: the stream's generator is cancelled at the next
event, and a plain request is watched for a disconnect while the engine works.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse

from agent_server import answering
from agent_server.core.engine import final_event
from agent_server.core.events import (
    AnswerEvent,
    CallEvent,
    Event,
    FinalEvent,
    ResultEvent,
    TokenEvent,
)
from agent_server.errors import AgentError, Conflict, NotFound, NotReady
from agent_server.http.deps import (
    AdmissionDep,
    DocumentsDep,
    EngineDep,
    MetricsDep,
    RetrieveDep,
    SettingsDep,
    StoreDep,
    WebGPTDep,
    get_index_state,
)
from agent_server.http.schemas import (
    AskRequest,
    AskResponse,
    CallItem,
    ConversationDetail,
    ConversationSummary,
    DocumentHit,
    DocumentInfo,
    ErrorBody,
    ToolInfo,
    TraceItem,
)
from agent_server.storage.store import NewTurn
from tools.documents import DocumentError
from tools.retrieval import IndexNotReady

router = APIRouter()
T = TypeVar("T")

# How often a plain request checks whether its client is still there.
DISCONNECT_POLL_S = 0.25
CLIENT_GONE = 499  # nginx's "client closed request": logged, never seen by the client


@router.post(
    "/v1/ask",
    responses={
        200: {"content": {"text/event-stream": {}}},
        400: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def ask(
    body: AskRequest,
    request: Request,
    engine: EngineDep,
    webgpt: WebGPTDep,
    settings: SettingsDep,
    store: StoreDep,
    admission: AdmissionDep,
    metrics: MetricsDep,
) -> Response:
    asked = body.answer_request(settings.max_new_tokens)
    made = answering.plan(asked, engine)  # an unknown tool or strategy is a 400 before any work
    if body.conversation_id is not None:  # (an unknown id is a 404 in either mode)
        history = await store.history(body.conversation_id, engine.prompt.history_turns)
        asked = replace(asked, history=history)

    @asynccontextmanager
    async def answered() -> AsyncIterator[AsyncGenerator[Event, None]]:
        """A queue slot, the time limit, and the answer's events, closed on every exit."""
        async with admission.limit(settings.request_timeout_s), admission.slot():
            events = answering.answer(asked, engine, webgpt, made)
            try:
                yield events
            finally:
                await events.aclose()  # a client gone mid-answer: stopped at the next token

    async def remember(final: FinalEvent) -> AskResponse:
        """Store the finished turn (one transaction: nothing is written for an unfinished one)."""
        metrics.observe_final(final)
        conversation_id = body.conversation_id or (await store.create()).id
        turn = NewTurn.from_final(body.question, final, mode=body.mode, model=engine.backend.name)
        await store.add_turn(conversation_id, turn)
        return AskResponse.from_final(final, engine.backend.name, conversation_id)

    if body.stream:
        admission.check()  # a full queue is a 429 before the stream's 200
        return StreamingResponse(
            _sse(answered, remember),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def answer() -> AskResponse:
        async with answered() as events:
            return await remember(await final_event(events))

    response = await _unless_disconnected(request, answer())
    return Response(status_code=CLIENT_GONE) if response is None else _json(response)


@router.get("/v1/conversations")
async def list_conversations(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ConversationSummary]:
    return [ConversationSummary.from_info(c) for c in await store.list(limit, offset)]


@router.get("/v1/conversations/{conversation_id}", responses={404: {"model": ErrorBody}})
async def get_conversation(conversation_id: str, store: StoreDep) -> ConversationDetail:
    conversation = await store.get(conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id!r}")
    return ConversationDetail.from_conversation(conversation)


@router.delete(
    "/v1/conversations/{conversation_id}", status_code=204, responses={404: {"model": ErrorBody}}
)
async def delete_conversation(conversation_id: str, store: StoreDep) -> Response:
    if not await store.delete(conversation_id):
        raise NotFound(f"no conversation {conversation_id!r}")
    return Response(status_code=204)


@router.get("/v1/tools")
async def list_tools(engine: EngineDep) -> list[ToolInfo]:
    return [
        ToolInfo(name=t.name, description=t.description, example=t.example, offered=t.offered())
        for t in engine.tools.values()
    ]


@router.get("/v1/documents", responses={409: {"model": ErrorBody}})
async def list_documents(documents: DocumentsDep, request: Request) -> list[DocumentInfo]:
    listed = await documents.listing()
    index = get_index_state(request)  # after the listing's sync, which may start a new index
    return [DocumentInfo.from_local(d, index) for d in listed]


@router.post(
    "/v1/documents",
    status_code=201,
    responses={400: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def upload_document(
    file: UploadFile, documents: DocumentsDep, request: Request
) -> DocumentInfo:
    data = await file.read()
    uploaded = await documents.upload(file.filename or "", data)
    return DocumentInfo.from_local(uploaded, get_index_state(request))


@router.get(
    "/v1/documents/search",
    responses={409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def search_documents(
    retrieve: RetrieveDep,
    q: Annotated[str, Query(min_length=1, max_length=300, description="what to look for")],
    k: Annotated[int, Query(ge=1, le=20)] = 3,
) -> list[DocumentHit]:
    """The passages of the documents that Retrieve would give the model for `q`, best first."""
    try:
        hits = await retrieve.search(q, k)
    except IndexNotReady as exc:
        raise NotReady(str(exc)) from exc
    except DocumentError as exc:  # e.g. no document in the folder can be read
        raise Conflict(str(exc)) from exc
    return [DocumentHit.from_hit(h) for h in hits]


@router.delete(
    "/v1/documents/{document_id}",
    status_code=204,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def delete_document(document_id: str, documents: DocumentsDep) -> Response:
    await documents.delete(document_id)
    return Response(status_code=204)


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None (and `work` cancelled) once the client has gone."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                return None
    finally:
        task.cancel()  # a no-op when done; on our own cancellation, the work stops too


async def _sse(
    answering: Callable[[], AbstractAsyncContextManager[AsyncGenerator[Event, None]]],
    remember: Callable[[FinalEvent], Awaitable[AskResponse]],
) -> AsyncIterator[str]:
    try:
        async with answering() as events:
            async for event in events:
                if isinstance(event, FinalEvent):
                    yield _sse_frame("final", (await remember(event)).model_dump_json())
                else:
                    yield _frame(event)
    except AgentError as exc:  # overloaded, timed out, or a failure the engine reported
        yield _sse_frame("error", ErrorBody(error=str(exc)).model_dump_json())


def _frame(event: TokenEvent | AnswerEvent | CallEvent | ResultEvent) -> str:
    if isinstance(event, TokenEvent):
        token = {"text": event.text} | ({} if event.sample is None else {"sample": event.sample})
        return _sse_frame("token", json.dumps(token, ensure_ascii=False))
    if isinstance(event, AnswerEvent):
        return _sse_frame("answer", json.dumps({"text": event.text}, ensure_ascii=False))
    if isinstance(event, CallEvent):
        return _sse_frame("call", CallItem.from_event(event).model_dump_json())
    item = {
        "index": event.index,
        **TraceItem.from_event(event).model_dump(),
        "sample": event.sample,
    }
    return _sse_frame("result", json.dumps(item, ensure_ascii=False))


def _sse_frame(kind: str, data: str) -> str:
    return f"event: {kind}\ndata: {data}\n\n"


def _json(model: AskResponse) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")
