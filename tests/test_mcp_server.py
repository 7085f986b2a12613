"""`agent-server mcp`: this service's tools and `ask`, served over stdio to the official `mcp`
client (the real SDK on both ends, the server a real subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def _session_calls(calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[Any]]:
    env = {**os.environ, "AGENT_TOOLS": '["Calculator"]'}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "agent_server.cli", "mcp"], env=env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        results = [await session.call_tool(name, arguments) for name, arguments in calls]
    return [t.name for t in listed.tools], results


def test_the_tools_are_listed_and_called_and_their_errors_are_tool_errors():
    names, (quotient, refused) = asyncio.run(
        _session_calls(
            [("Calculator", {"argument": "400/1400"}), ("Calculator", {"argument": "1/0"})]
        )
    )
    assert names == ["Calculator", "ask"]
    assert not quotient.is_error and quotient.content[0].text == "0.2857"
    assert refused.is_error and "division by zero" in refused.content[0].text


@pytest.mark.model
def test_ask_answers_with_the_real_model_and_its_trace():
    _, (answer,) = asyncio.run(
        _session_calls([("ask", {"question": "What is 1234 * 5678?", "strategy": "toolformer"})])
    )
    assert not answer.is_error
    result = answer.structured_content or json.loads(answer.content[0].text)
    assert result["value"] is not None and float(result["value"]) == 7006652
    assert result["trace"][0]["tool"] == "Calculator" and result["trace"][0]["result"] == "7006652"
