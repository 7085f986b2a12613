"""FastAPI dependencies: what the lifespan put on `app.state`, as `Annotated` aliases.

Routes read like prose (`engine: EngineDep`) and tests replace nothing: the app factory decides
what goes on the state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agent_server.engine import Engine
from agent_server.errors import AgentError
from agent_server.settings import Settings


class NotReady(AgentError):
    """The model is still loading (or failed to load)."""


def get_engine(request: Request) -> Engine:
    state = request.app.state
    if state.engine is None:
        raise NotReady(state.load_error or "the model is still loading")
    ready: Engine = state.engine
    return ready


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
