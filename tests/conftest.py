"""Shared fixtures: test-double tools at the `Tool` seam, a scripted engine, the real model.

The real-model engine is built once per test session (the model loads once, as in the service).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from agent_server.backends.scripted import Reply, ScriptedBackend
from agent_server.engine import Engine, EngineConfig
from agent_server.prompts import Prompt
from agent_server.settings import Settings
from tools.base import Tool, ToolError


class EchoTool:
    """Returns its argument reversed, so a test can tell a result from the argument."""

    name = "Echo"
    description = "Echoes its input backwards."
    example = '"abc"'

    async def __call__(self, argument: str) -> str:
        return argument[::-1]


class RefusingTool:
    name = "Refuse"
    description = "Always refuses."
    example = "x"

    async def __call__(self, argument: str) -> str:
        raise ToolError(f"cannot handle {argument!r}")


class BrokenTool:
    name = "Broken"
    description = "Has a bug."
    example = "x"

    async def __call__(self, argument: str) -> str:
        raise RuntimeError(f"bug with {argument}")


class SlowTool:
    name = "Slow"
    description = "Takes its time."
    example = "1"

    async def __call__(self, argument: str) -> str:
        await asyncio.sleep(float(argument))
        return "done"


@pytest.fixture
def make_engine() -> Iterator[Callable[..., tuple[Engine, ScriptedBackend]]]:
    engines: list[Engine] = []

    def make(
        *replies: Reply, tools: list[Tool] | None = None, **config: object
    ) -> tuple[Engine, ScriptedBackend]:
        backend = ScriptedBackend(replies)
        chosen = tools if tools is not None else [EchoTool()]
        engine = Engine(
            backend,
            {t.name: t for t in chosen},
            Prompt("chat"),
            EngineConfig(**config),  # type: ignore[arg-type]
        )
        engines.append(engine)
        return engine, backend

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture(scope="session")
def real_engine() -> Iterator[Engine]:
    from agent_server.runtime import build_engine

    engine = build_engine(Settings())
    yield engine
    engine.close()
