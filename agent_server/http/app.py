"""The FastAPI app factory: the engine is built once in the lifespan, never at import time.

The model loads in a background thread after the server starts listening, so `/healthz`
answers at once and `/readyz` says when the model is ready. Routes live in `api.py` (native)
and `openai_api.py`; limits, logs and metrics in `admission.py`, `middleware.py`, `metrics.py`;
conversations and documents in `store.py` (copied to the documents folder by `document_sync.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import State

from agent_server import mcp_server
from agent_server.core.engine import Engine
from agent_server.core.events import FinalEvent
from agent_server.errors import (
    AgentError,
)
from agent_server.http import api, middleware, openai_api, responses_api, web_ui
from agent_server.http.admission import Admission
from agent_server.http.deps import EngineDep, MetricsDep
from agent_server.http.metrics import CONTENT_TYPE, Metrics
from agent_server.http.schemas import ErrorBody
from agent_server.runtime import build_engine, build_webgpt
from agent_server.settings import Settings
from agent_server.storage.document_sync import DocumentSync
from agent_server.storage.store import Store
from agent_server.webgpt.agent import WebGPT
from tools.retrieval import Retrieve

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    engine_factory: Callable[[Settings], Engine] = build_engine,
    webgpt_factory: Callable[[Settings, Engine], WebGPT] = build_webgpt,
) -> FastAPI:
    mcp = mcp_server.HttpMount()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        # Opening the store (and migrating it) is quick but blocks.
        url = settings.database_url.get_secret_value() if settings.database_url else None
        app.state.store = store = await asyncio.to_thread(
            Store.open, url, settings.data_dir / "conversations.db"
        )
        app.state.engine = None
        app.state.retrieve = None  # the engine's Retrieve tool, once loaded, if it has one
        app.state.documents = None
        if settings.documents is None:  # the default folder, so uploads work from the start
            await asyncio.to_thread(settings.documents_path.mkdir, parents=True, exist_ok=True)
        if settings.documents_path.is_dir():
            app.state.documents = DocumentSync(
                store, settings.documents_path, lambda: _reindex(app.state)
            )
            # Before the model loads, so the first index already holds every upload.
            await app.state.documents.sync()
        app.state.load_error = None

        async def load() -> None:
            try:
                engine = await asyncio.to_thread(engine_factory, settings)
                try:
                    app.state.webgpt = webgpt_factory(settings, engine)
                except Exception:
                    engine.close()
                    raise
                if settings.max_active_answers is None:
                    app.state.admission.max_active = engine.backend.parallel
                retrieve = engine.tools.get("Retrieve")
                app.state.retrieve = retrieve if isinstance(retrieve, Retrieve) else None
                app.state.engine = engine  # last: the engine's presence means "ready"
            except Exception as exc:  # reported by /readyz; the process stays up to say so
                app.state.load_error = f"{type(exc).__name__}: {exc}"
                return
            try:
                await mcp.start(engine.tools, answer_in_queue, settings.call_timeout_s)
            except Exception as exc:  # the service answers without /mcp (503), saying why
                log.exception("the MCP endpoint /mcp could not start")
                mcp.error = f"/mcp could not start: {type(exc).__name__}: {exc}"

        async def answer_in_queue(question: str, strategy: str) -> FinalEvent:
            """An MCP client's `ask`, through the same queue and time limit as the routes'."""
            admission = app.state.admission
            async with admission.limit(settings.request_timeout_s), admission.slot():
                final: FinalEvent = await app.state.engine.run(question, strategy=strategy)
                return final

        loading = asyncio.create_task(load())
        syncing = None
        if app.state.documents is not None:
            syncing = asyncio.create_task(app.state.documents.run(settings.documents_sync_s))
        yield
        if syncing is not None:
            syncing.cancel()
        await loading
        await mcp.aclose()
        if app.state.engine is not None:
            await app.state.webgpt.aclose()
            app.state.engine.close()
        app.state.store.close()

    app = FastAPI(title="agent-server", version="0.1.0", lifespan=lifespan)
    # The queue and the metrics exist from the start: the middleware counts every request.
    app.state.engine = None
    app.state.admission = Admission(settings.max_active_answers or 1, settings.max_queued_answers)
    # The model counts as loaded by the very test /readyz makes (`deps.get_engine`).
    app.state.metrics = Metrics(app.state.admission, lambda: app.state.engine)
    middleware.install(app, settings, app.state.metrics)

    @app.exception_handler(AgentError)
    async def agent_error(_: Request, exc: AgentError) -> JSONResponse:
        body = ErrorBody(error=str(exc)).model_dump()
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz(engine: EngineDep) -> dict[str, str]:
        return {"status": "ready", "model": engine.backend.name}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(metrics: MetricsDep) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    app.include_router(api.router)
    app.include_router(openai_api.router)
    app.include_router(responses_api.router)
    # An ASGI app as the endpoint: Starlette serves it as one (its type says request handlers).
    app.add_route("/mcp", mcp, ["GET", "POST", "DELETE"], include_in_schema=False)  # type: ignore[arg-type]
    web_ui.install(app)  # the UI's files, where no route matches
    return app


def _reindex(state: State) -> bool:
    """Have Retrieve re-read its folder; False while there is no engine yet to tell."""
    if state.engine is None:
        return False
    if state.retrieve is not None:
        state.retrieve.refresh()
    return True
