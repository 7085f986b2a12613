"""MCP servers' tools (`tools.mcp_servers`) with a server nobody here wrote: `mcp-server-time`,
the reference server from PyPI, started over stdio by the official `mcp` SDK."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from doubles import EchoTool

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.settings import Settings
from tools.base import Tool, ToolError
from tools.mcp_servers import McpError, McpTool, connect
from tools.registry import ToolOptions, build_registry

TIME_SERVER = {"command": sys.executable, "args": ["-m", "mcp_server_time"]}


@pytest.fixture
def time_tools() -> Iterator[dict[str, McpTool]]:
    tools = connect({"time": TIME_SERVER})
    yield tools
    for tool in tools.values():
        tool.close()


def test_every_listed_tool_is_an_inline_tool_with_its_arguments_described(time_tools):
    assert sorted(time_tools) == ["convert_time", "get_current_time"]
    now = time_tools["get_current_time"]
    assert isinstance(now, Tool)
    assert now.description.startswith("Get current time in a specific timezone")
    assert "MCP server time" in now.description and "timezone: string" in now.description
    assert json.loads(now.example) == {"timezone": "America/New_York"}  # from the "e.g."


def test_a_call_reaches_the_server_and_its_result_comes_back(time_tools):
    result = asyncio.run(time_tools["get_current_time"]('{"timezone": "Asia/Tokyo"}'))
    assert json.loads(result)["timezone"] == "Asia/Tokyo"
    bare = asyncio.run(time_tools["get_current_time"]("Europe/Paris"))  # one string field
    assert json.loads(bare)["timezone"] == "Europe/Paris"


@pytest.mark.parametrize(
    ("argument", "problem"),
    [
        ('{"timezone": "Mars/Olympus"}', "Invalid timezone"),  # the server's own error
        ('{"zone": "UTC"}', "'timezone' is a required property"),
        ('["UTC"]', "must be a JSON object"),
        ('{"timezone": 9}', "timezone: 9 is not of type 'string'"),
    ],
)
def test_bad_calls_are_tool_errors_that_say_what_is_wrong(time_tools, argument, problem):
    with pytest.raises(ToolError, match=problem):
        asyncio.run(time_tools["get_current_time"](argument))


def test_a_server_that_cannot_start_is_named():
    with pytest.raises(McpError, match="'broken' could not start"):
        connect({"broken": {"command": "/nonexistent/mcp-server"}})
    with pytest.raises(McpError, match="'x' could not start"):
        build_registry(
            ["Calculator"], ToolOptions(mcp_servers={"x": {"url": "http://127.0.0.1:9"}})
        )


def test_a_server_killed_mid_answer_gives_a_tool_error_and_the_answer_goes_on(tmp_path: Path):
    pid_file = tmp_path / "pid"
    wrapper = {
        "command": "sh",
        "args": ["-c", f"echo $$ > {pid_file}; exec {sys.executable} -m mcp_server_time"],
    }
    tools = build_registry([], ToolOptions(mcp_servers={"time": wrapper}))
    backend = ScriptedBackend(
        [
            ['Tokyo: [get_current_time({"timezone": "Asia/Tokyo"})', " ok. Again: "],
            ['[get_current_time({"timezone": "Asia/Tokyo"})', " still here."],
        ]
    )
    engine = Engine(backend, {**tools, "Echo": EchoTool()}, Prompt("chat"))
    try:
        first = asyncio.run(engine.run("What time is it in Tokyo?", strategy="toolformer"))
        assert "Asia/Tokyo" in (first.trace[0].result or "")
        assert "get_current_time" in backend.prompts[0]  # described to the model
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        started = time.monotonic()
        second = asyncio.run(engine.run("And now?", strategy="toolformer"))
        assert time.monotonic() - started < 15  # an error, not a hang
        assert second.trace[0].result is None
        assert "MCP server 'time'" in (second.trace[0].error or "")
        assert second.answer.endswith("still here.")
    finally:
        engine.close()
        for tool in tools.values():
            tool.close()


def test_the_settings_take_stdio_or_http_servers_and_refuse_both_or_neither():
    settings = Settings(mcp_servers={"time": TIME_SERVER, "web": {"url": "http://127.0.0.1:9/mcp"}})
    assert settings.tool_options().mcp_servers["web"] == {
        "url": "http://127.0.0.1:9/mcp",
        "args": [],
    }
    with pytest.raises(ValueError, match="either a command"):
        Settings(mcp_servers={"x": {"command": "a", "url": "http://b"}})
    with pytest.raises(ValueError, match="either a command"):
        Settings(mcp_servers={"x": {}})


@pytest.mark.model
def test_the_real_model_answers_what_time_it_is_in_tokyo_through_the_time_server():
    from agent_server.runtime import build_engine

    engine = build_engine(Settings(tools=["Calculator"], mcp_servers={"time": TIME_SERVER}))
    try:
        final = asyncio.run(engine.run("What time is it in Tokyo?"))
    finally:
        engine.close()
    call = final.trace[0]
    assert call.tool == "get_current_time" and call.result is not None
    said = json.loads(call.result)
    assert said["timezone"] == "Asia/Tokyo"
    # Not preceded by a digit: "1:31" must not count inside "11:31".
    forms = "|".join(re.escape(form) for form in clock_forms(said["datetime"]))
    assert re.search(rf"(?<!\d)(?:{forms})", final.answer)


def clock_forms(iso: str) -> set[str]:
    """The ways a person writes the hour and minute of `iso`: 01:31, 1:31 AM, 13:31, 1:31 PM."""
    hour, minute = int(iso[11:13]), iso[14:16]
    twelve = hour % 12 or 12
    return {
        f"{hour:02d}:{minute}",
        f"{hour}:{minute}",
        f"{twelve}:{minute} {'AM' if hour < 12 else 'PM'}",
        f"{twelve}:{minute} {'am' if hour < 12 else 'pm'}",
    }


def test_a_clock_reading_counts_in_24_or_12_hour_form() -> None:
    assert clock_forms("2026-12-08T01:31:07+09:00") >= {"01:31", "1:31 AM"}
    assert "1:31 PM" in clock_forms("2026-12-08T13:31:07+09:00")
    assert "12:05 AM" in clock_forms("2026-12-08T00:05:00+09:00")
    assert "1:31 AM" not in clock_forms("2026-12-08T13:31:07+09:00")
