"""The prompts' worked examples show what the tools really return: every Calculator and Python
call in them is run, and its result must be the one the example splices in (a made-up result
would teach the model to expect what the tool never says)."""

from __future__ import annotations

import asyncio

import pytest

from agent_server.core.grammar import Call, parse
from agent_server.core.prompts import read_prompt
from tools.base import invoke, shown
from tools.calculator import Calculator
from tools.python_sandbox import PythonSandbox

FILES = ["examples/Calculator.txt", "examples/Python.txt", "strategies/calculator.txt"]


@pytest.fixture(scope="module")
def tools():
    registry = {"Calculator": Calculator(), "Python": PythonSandbox()}
    yield registry
    for tool in registry.values():
        tool.close()


@pytest.mark.parametrize("name", FILES)
def test_every_call_in_the_examples_gives_its_spliced_result(tools, name):
    calls = [s for s in parse(read_prompt(name)) if isinstance(s, Call)]
    assert calls, f"{name} has no calls"

    async def run_all():
        return [await invoke(tools[c.name], c.argument, 30) for c in calls]

    for call, outcome in zip(calls, asyncio.run(run_all()), strict=True):
        assert shown(outcome.result, outcome.error) == call.result, call
