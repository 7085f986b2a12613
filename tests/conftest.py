"""Shared fixtures: a scripted engine and the real model (test-double tools are in `doubles`).

The real-model engine is built once per test session (the model loads once, as in the service).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from doubles import EchoTool

from agent_server.backends.scripted import Reply, ScriptedBackend
from agent_server.core.engine import Engine, EngineConfig
from agent_server.core.prompts import Prompt
from agent_server.settings import Settings
from tools.base import Tool

# The fixture web server (`fixture_web`: its base URL) for every test that browses.
pytest_plugins = ["fixture_web"]


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test's settings keep conversations in a fresh folder, never in the user's home."""
    monkeypatch.setenv("AGENT_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server (Debian's), started once for the whole run; its base URL."""
    import postgres_server

    with postgres_server.running() as url:
        yield url


@pytest.fixture
def postgres_database(postgres_url: str) -> str:
    """A new, empty database on the test run's server, for one test; its URL."""
    import postgres_server

    name = f"t{uuid.uuid4().hex[:16]}"
    return postgres_server.create_database(postgres_url, name)


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
