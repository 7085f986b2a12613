"""Function calling and structured output on the real default model (the requests:
`agent_server.evals.function_calling`): the right function with arguments its JSON Schema
accepts in at least 8 of 10 requests, with the service's own tools left out (`agent.tools`: [],
as a framework that brings its tools asks); every JSON answer valid against its schema, 10 of
10. `benchmarks/function_calling.py` prints the same runs, with the service's tools offered too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agent_server.core.engine import Engine
from agent_server.evals import function_calling
from agent_server.runtime import build_engine
from agent_server.settings import Settings

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    built = build_engine(Settings(tools=["Calculator"]))
    yield built
    built.close()


def test_the_model_calls_the_right_function_with_valid_arguments(engine):
    outcomes = asyncio.run(function_calling.function_calls(engine, tools=[]))
    assert sum(o.right for o in outcomes) >= 8, outcomes


def test_json_schema_answers_validate_every_time(engine):
    outcomes = asyncio.run(function_calling.json_answers(engine))
    assert all(o.right for o in outcomes), [o for o in outcomes if not o.right]
