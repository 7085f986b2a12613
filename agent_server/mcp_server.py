"""This service as an MCP server: its tools, and an `ask` tool that answers a question the way the
service does (the model with its tools, a whole answer with its trace), for any MCP client
(Claude Desktop, an agent framework, the `mcp` SDK). Over stdio as `agent-server mcp`, and over
Streamable HTTP at `/mcp` on the running service (`HttpMount`: behind its API keys, its answers
through its queue).

Each built-in tool is exposed under its own name with one string argument, run through the same
`invoke` as the engine's calls (time limit, output cap); an error the model would read comes
back as an MCP tool error. The model is loaded at the first `ask`, so a client that only wants
the calculator or the sandbox does not wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from pydantic import Field

from agent_server.core.events import FinalEvent
from tools.base import Tool, invoke

Answer = Callable[[str, str], Awaitable[FinalEvent]]
STRATEGY_HELP = (
    "how to reason: auto (the default: a vote of programs for a question with numbers, else "
    "sentences with tools), toolformer, calculator, program, tir, cot, consensus"
)


def build(tools: Mapping[str, Tool], answer: Answer, call_timeout_s: float) -> Any:
    """An `MCPServer` with `tools` and `ask` (typed `Any`: the SDK's generic server class)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(
        "agent-server",
        instructions=(
            "A local language model with tools. `ask` answers a question with the model and its "
            "tools; the other tools run one call each."
        ),
    )
    for tool in tools.values():
        server.add_tool(
            _runner(tool, call_timeout_s),
            name=tool.name,
            description=f"{tool.description} Example argument: {tool.example}",
        )

    async def ask(
        question: Annotated[str, Field(min_length=1, max_length=8_000)],
        strategy: Annotated[str, Field(description=STRATEGY_HELP)] = "auto",
    ) -> dict[str, Any]:
        final = await answer(question, strategy)
        trace = [
            {"tool": r.tool, "argument": r.argument, "result": r.result, "error": r.error}
            for r in final.trace
        ]
        return {
            "answer": final.answer,
            "value": final.value,
            "strategy": final.strategy,
            "trace": trace,
        }

    server.add_tool(
        ask,
        name="ask",
        description="Answer a question with the local model and its tools; returns the answer, "
        "its value (a number, when it has one) and every tool call it made.",
    )
    return server


def _runner(tool: Tool, timeout_s: float) -> Callable[[str], Awaitable[str]]:
    from mcp.server.mcpserver.exceptions import ToolError

    async def run(argument: str) -> str:
        outcome = await invoke(tool, argument, timeout_s)
        if outcome.result is None:
            raise ToolError(outcome.error or f"{tool.name} failed")
        return outcome.result

    # Set as objects: the SDK evaluates string annotations in the module, where `tool` is not.
    run.__annotations__ = {
        "argument": Annotated[str, Field(description=f"e.g. {tool.example}")],
        "return": str,
    }
    return run


class HttpMount:
    """`/mcp` on the service: the SDK's Streamable HTTP app once the engine is loaded (503 with
    Retry-After before), its session manager running until `aclose`."""

    def __init__(self) -> None:
        self._app: Any = None
        self.error: str | None = None  # why it could not start, if it could not
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, tools: Mapping[str, Tool], answer: Answer, call_timeout_s: float) -> None:
        from mcp.server.streamable_http_manager import StreamableHTTPASGIApp

        server = build(tools, answer, call_timeout_s)
        # host 0.0.0.0: no DNS-rebinding allow-list of its own; the service's API keys guard it.
        server.streamable_http_app(streamable_http_path="/mcp", host="0.0.0.0")
        manager = server.session_manager
        running = asyncio.Event()

        async def run() -> None:
            async with manager.run():
                running.set()
                await self._stop.wait()

        self._task = asyncio.create_task(run())
        await running.wait()
        self._app = StreamableHTTPASGIApp(manager)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from starlette.responses import JSONResponse

            busy = {"Retry-After": "5"}
            body = {"error": self.error or "the model is still loading"}
            await JSONResponse(body, status_code=503, headers=busy)(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


class LazyAnswer:
    """`ask`'s answers from an engine built at the first question (one at a time)."""

    def __init__(self, build_engine: Callable[[], Any]) -> None:
        self._build = build_engine
        self._engine: Any = None
        self._lock = asyncio.Lock()

    async def __call__(self, question: str, strategy: str) -> FinalEvent:
        async with self._lock:
            if self._engine is None:
                self._engine = await asyncio.to_thread(self._build)
            final: FinalEvent = await self._engine.run(question, strategy=strategy)
            return final

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
