"""Fixtures for the OpenAI-shaped routes: the app on loopback with the scripted model and the
Echo tool, and OpenAI's own client pointed at it (a test module may define its own instead)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from doubles import EchoTool
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def oai(backend: ScriptedBackend) -> Iterator[openai.OpenAI]:
    engine = Engine(backend, {"Echo": EchoTool()}, Prompt("chat"))
    for client in serve(create_app(Settings(tools=[]), lambda _: engine)):
        wait_ready(client)
        base_url = f"{str(client.base_url).rstrip('/')}/v1"
        with openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10) as oai:
            yield oai
