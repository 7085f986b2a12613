"""The native API's routes: `/v1/ask` and what belongs with it."""

from __future__ import annotations

from fastapi import APIRouter

from agent_server.decoding import Sampling
from agent_server.deps import EngineDep, SettingsDep
from agent_server.schemas import AskRequest, AskResponse, ErrorBody

router = APIRouter()


@router.post("/v1/ask", responses={400: {"model": ErrorBody}, 503: {"model": ErrorBody}})
async def ask(body: AskRequest, engine: EngineDep, settings: SettingsDep) -> AskResponse:
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
