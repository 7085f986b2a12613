"""The FastAPI app factory: the engine is built once in the lifespan, never at import time.

The model loads in a background thread after the server starts listening, so `/healthz`
answers at once and `/readyz` says when the model is ready (the full API is its own issue).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from agent_server.decoding import Sampling
from agent_server.engine import Engine
from agent_server.errors import AgentError, BadRequest
from agent_server.runtime import build_engine
from agent_server.schemas import AskRequest, AskResponse, ErrorBody
from agent_server.settings import Settings


class NotReady(AgentError):
    """The model is still loading (or failed to load)."""


def get_engine(request: Request) -> Engine:
    state = request.app.state
    if state.engine is None:
        raise NotReady(state.load_error or "the model is still loading")
    ready: Engine = state.engine
    return ready


EngineDep = Annotated[Engine, Depends(get_engine)]


def create_app(
    settings: Settings, engine_factory: Callable[[Settings], Engine] = build_engine
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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

    @app.post("/v1/ask", responses={400: {"model": ErrorBody}, 503: {"model": ErrorBody}})
    async def ask(body: AskRequest, engine: EngineDep) -> AskResponse:
        sampling = Sampling(
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=tuple(s for s in body.stop if s),
            max_new_tokens=body.max_new_tokens or settings.max_new_tokens,
        )
        final = await engine.run(
            body.question, sampling=sampling, tools=body.tools, max_calls=body.max_calls
        )
        return AskResponse.from_final(final, engine.backend.name)

    return app
