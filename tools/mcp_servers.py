"""Tools from MCP servers (the Model Context Protocol, through the official `mcp` SDK).

Every tool a configured server lists becomes an inline tool like the built-in ones: its name,
description and arguments go into the prompt, the model writes `[get_current_time({"timezone":
"Asia/Tokyo"})]`, and the call goes through the engine's usual path (time limit, output cap,
errors as results the model reads). A server is started over stdio (`{"command": …, "args":
…}`) or reached over Streamable HTTP (`{"url": …}`).

Each server's session runs on a thread of its own, in its own event loop: the SDK keeps a
session inside anyio task groups, which must be entered and left by one task, while the engine
calls tools from the service's loop; a call crosses over with `run_coroutine_threadsafe`. A
server that cannot start is a `ConfigError`-worthy `McpError` at start; one that dies later
makes its calls tool errors ("… is not running"), never a crash or a hang.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tools.base import NoWarmUp, ToolError, cap_output
from tools.json_args import describe_fields, example_arguments, parse_arguments

if TYPE_CHECKING:  # the SDK takes a second to import: only once a server is configured
    from mcp.types import CallToolResult

START_TIMEOUT_S = 30.0  # a stdio server's start (a Python interpreter and its imports)


class McpError(RuntimeError):
    """A configured MCP server could not be started or listed."""


@dataclass(frozen=True)
class McpServer:
    """How to reach one server: a command for stdio, or a URL for Streamable HTTP."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise McpError(f"MCP server {self.name!r}: give either a command or a url")


@dataclass(frozen=True)
class ListedTool:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=dict)


class McpConnection:
    """One server's session, on its own thread; `start` blocks until its tools are listed."""

    def __init__(self, server: McpServer, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.server = server
        self.start_timeout_s = start_timeout_s
        self.tools: list[ListedTool] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._session: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> list[ListedTool]:
        name = f"mcp-{self.server.name}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            self.close()
            raise McpError(
                f"MCP server {self.server.name!r} did not list its tools within "
                f"{self.start_timeout_s:g} s"
            )
        if self._error is not None:
            why = _leaf(self._error)
            raise McpError(
                f"MCP server {self.server.name!r} could not start: {type(why).__name__}: {why}"
            )
        return self.tools

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._session is not None

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """The tool's text result; `ToolError` for an error result or a server that is gone."""
        loop, session = self._loop, self._session
        if loop is None or session is None or not self.running:
            raise ToolError(f"the MCP server {self.server.name!r} is not running")
        try:
            future: Future[Any] = asyncio.run_coroutine_threadsafe(
                session.call_tool(tool, arguments), loop
            )
            result = await asyncio.wrap_future(future)
        except ToolError:
            raise
        except Exception as exc:  # the server died or broke the protocol mid-call
            why = _leaf(exc)
            raise ToolError(f"the MCP server {self.server.name!r} failed: {why}") from exc
        return _said(result, tool)

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile: the thread is ending anyway
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._session = None

    # -- the connection's own thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by `start`, or seen as "not running" later
            self._error = self._error or exc
        finally:
            self._session = None
            self._ready.set()

    async def _serve(self) -> None:
        from mcp import ClientSession

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._transport() as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                listed = await session.list_tools()
                self.tools = [
                    ListedTool(t.name, t.description or t.name, dict(t.input_schema or {}))
                    for t in listed.tools
                ]
                self._session = session
                self._ready.set()
                await self._stop.wait()

    def _transport(self) -> Any:
        if self.server.url is not None:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(self.server.url)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        assert self.server.command is not None
        params = StdioServerParameters(
            command=self.server.command,
            args=list(self.server.args),
            env=dict(self.server.env) if self.server.env is not None else None,
        )
        return stdio_client(params)


class McpTool(NoWarmUp):
    """One tool of an MCP server, written inline with a JSON object as its argument."""

    def __init__(self, connection: McpConnection, listed: ListedTool) -> None:
        self.connection = connection
        self.listed = listed
        self.name = listed.name
        self.description = _describe(listed, connection.server.name)
        self.example = json.dumps(example_arguments(listed.schema), ensure_ascii=False)
        self.parameters = listed.schema or {"type": "object"}

    async def __call__(self, argument: str) -> str:
        return await self.connection.call(self.name, parse_arguments(argument, self.listed.schema))

    def close(self) -> None:
        self.connection.close()


def _said(result: CallToolResult, tool: str) -> str:
    """A call's result as the model reads it: its text parts (an image or other part by its
    type), or `ToolError` with that text when the server says the call failed."""
    from mcp.types import TextContent

    text = "\n".join(
        part.text if isinstance(part, TextContent) else f"({part.type})" for part in result.content
    ).strip()
    if result.is_error:
        raise ToolError(text or f"{tool} failed")
    return cap_output(text or "(no output)")


def connect(servers: Mapping[str, Mapping[str, Any]]) -> dict[str, McpTool]:
    """Start every server and list its tools; `McpError` naming the first that fails (the
    servers started before it are closed again)."""
    tools: dict[str, McpTool] = {}
    connections: list[McpConnection] = []
    try:
        for name, spec in servers.items():
            server = McpServer(
                name,
                command=spec.get("command"),
                args=tuple(spec.get("args", ())),
                env=spec.get("env"),
                url=spec.get("url"),
            )
            connection = McpConnection(server)
            connections.append(connection)
            for listed in connection.start():
                if listed.name in tools:
                    raise McpError(f"two MCP servers list a tool named {listed.name!r}")
                tools[listed.name] = McpTool(connection, listed)
    except BaseException:
        for connection in connections:
            connection.close()
        raise
    return tools


def _leaf(error: BaseException) -> BaseException:
    """The first real error inside anyio's task-group wrappers."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _describe(listed: ListedTool, server: str) -> str:
    first_line = listed.description.strip().splitlines()[0] if listed.description.strip() else ""
    fields = describe_fields(listed.schema)
    return f"{first_line} (MCP server {server}; arguments: a JSON object {{{fields}}})"
