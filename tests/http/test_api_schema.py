"""Property-based tests from the OpenAPI schema (schemathesis): no generated request gets a 5xx.

The app runs under uvicorn on loopback with the scripted model and the test-double tools, so
every operation, the model-backed ones included, answers quickly; hypothesis generates the
bodies, paths and query strings from the schema the app publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
from doubles import EchoTool
from schemathesis.checks import not_a_server_error
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    documents: Path = tmp_path_factory.mktemp("documents")
    (documents / "notes.md").write_text("# Notes\nThe boiler was serviced in May.\n")
    settings = Settings(documents=documents, tools=[], cache_dir=tmp_path_factory.mktemp("cache"))
    backend = ScriptedBackend()
    app = create_app(settings, lambda _: Engine(backend, {"Echo": EchoTool()}, Prompt("chat")))
    for client in serve(app):
        wait_ready(client)
        yield client


def test_no_generated_request_gets_a_server_error(live: httpx.Client) -> None:
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/ask",
        "GET /v1/tools",
        "POST /v1/documents",
        "POST /v1/chat/completions",
        "POST /v1/responses",
    }
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            database=None,
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        no_server_error()
