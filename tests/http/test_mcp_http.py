"""`/mcp` on the running service: the official `mcp` client over Streamable HTTP (loopback),
with the scripted model and the Echo tool; behind the API keys when they are set."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
from doubles import EchoTool
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings


async def _use(url: str, headers: dict[str, str] | None = None) -> tuple[list[str], Any, Any]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with httpx.AsyncClient(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                listed = await session.list_tools()
                echoed = await session.call_tool("Echo", {"argument": "olleh"})
                asked = await session.call_tool(
                    "ask", {"question": "Say hi.", "strategy": "toolformer"}
                )
    return [t.name for t in listed.tools], echoed, asked


def test_the_service_serves_its_tools_and_ask_over_streamable_http():
    backend = ScriptedBackend([['Hi [Echo("!ereht")', " then."]])
    engine = Engine(backend, {"Echo": EchoTool()}, Prompt("chat"))
    for client in serve(create_app(Settings(tools=[]), lambda _: engine)):
        wait_ready(client)
        names, echoed, asked = asyncio.run(_use(f"{str(client.base_url).rstrip('/')}/mcp"))
        assert names == ["Echo", "ask"]
        assert echoed.content[0].text == "hello"
        result = asked.structured_content
        assert result["answer"] == "Hi then."  # the call left out, as a chat shows it
        assert result["trace"] == [
            {"tool": "Echo", "argument": "!ereht", "result": "there!", "error": None}
        ]


def test_mcp_over_http_needs_the_api_key_when_keys_are_set():
    engine = Engine(ScriptedBackend(["fine"]), {"Echo": EchoTool()}, Prompt("chat"))
    settings = Settings(tools=[], api_keys=["sekrit"])
    for client in serve(create_app(settings, lambda _: engine)):
        wait_ready(client)
        refused = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401
        names, echoed, _ = asyncio.run(
            _use(
                f"{str(client.base_url).rstrip('/')}/mcp",
                headers={"Authorization": "Bearer sekrit"},
            )
        )
        assert names == ["Echo", "ask"] and echoed.content[0].text == "hello"


def test_mcp_while_the_model_loads_is_503_then_it_serves():
    release = threading.Event()

    def loading(_: Settings) -> Engine:
        release.wait(10)
        return Engine(ScriptedBackend(["ok"]), {"Echo": EchoTool()}, Prompt("chat"))

    for client in serve(create_app(Settings(tools=[]), loading)):
        early = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert early.status_code == 503 and early.headers["retry-after"] == "5"
        assert "loading" in early.json()["error"]
        release.set()
        wait_ready(client)
        names, _, _ = asyncio.run(_use(f"{str(client.base_url).rstrip('/')}/mcp"))
        assert names == ["Echo", "ask"]
