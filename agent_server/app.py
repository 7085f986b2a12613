"""The FastAPI app factory: the engine is built once in the lifespan, never at import time.

The model loads in a background thread after the server starts listening, so `/healthz`
answers at once and `/readyz` says when the model is ready (the full API is its own issue).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agent_server import api, openai_api
from agent_server.deps import EngineDep, NotReady
from agent_server.engine import Engine
from agent_server.errors import BadRequest
from agent_server.runtime import build_engine
from agent_server.schemas import ErrorBody
from agent_server.settings import Settings


def create_app(
    settings: Settings, engine_factory: Callable[[Settings], Engine] = build_engine
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = None
        app.state.load_error = None

        async def load() -> None:
            try:
                app.state.engine = await asyncio.to_thread(engine_factory, settings)
            except Exception as exc:  # reported by /readyz; the process stays up to say so
                app.state.load_error = f"{type(exc).__name__}: {exc}"

        loading = asyncio.create_task(load())
        yield
        await loading
        if app.state.engine is not None:
            app.state.engine.close()

    app = FastAPI(title="agent-server", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse(ErrorBody(error=str(exc)).model_dump(), status_code=400)

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        body = ErrorBody(error=str(exc)).model_dump()
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz(engine: EngineDep) -> dict[str, str]:
        return {"status": "ready", "model": engine.backend.name}

    app.include_router(api.router)
    app.include_router(openai_api.router)
    return app
