"""What a tool is: a named async function of one string argument that returns text.

The engine only sees this protocol. A tool raises `ToolError` for anything the *model* got wrong
(bad arguments, no result, a refused input); the engine splices that message back so the model
can read it and recover. Any other exception is a bug of ours and the engine reports it as an
internal tool failure, also without stopping the answer.

    ToolError
      └── ToolTimeout   (a call ran past its time limit: the tool's own, e.g. the sandbox's)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# Results longer than this are cut before they reach the model: a small model's context is short
# and a runaway tool must not flood it.
MAX_RESULT_CHARS = 2_000


class ToolError(Exception):
    """A one-line, model-readable reason why a call produced no result."""


class ToolTimeout(ToolError):
    """The call ran past its time limit."""


@runtime_checkable
class Tool(Protocol):
    """An inline tool: `[Name(argument)]` in the model's text."""

    @property
    def name(self) -> str:
        """The identifier the model writes, e.g. `Calculator`."""
        ...

    @property
    def description(self) -> str:
        """One line telling the model what the tool is for."""
        ...

    @property
    def example(self) -> str:
        """A typical argument, e.g. `400/1400`."""
        ...

    @property
    def parameters(self) -> Mapping[str, Any] | None:
        """The JSON Schema of the argument when it is a JSON object (the client's functions, MCP
        tools): its calls are then decoded to the schema. None: a free-text argument."""
        ...

    async def __call__(self, argument: str) -> str:
        """Run the tool; raise `ToolError` with a short reason when it cannot answer."""
        ...

    def offered(self) -> bool:
        """Whether an answer that names no tools is told of this one now (Retrieve: once there
        are documents to search); a request may still name it."""
        ...

    # The lifecycle the registry drives (`NoWarmUp` for a tool with nothing to keep warm).
    def start(self) -> None:
        """Begin warming up in the background (a worker process, an index); returns at once."""
        ...

    def prepare(self) -> object:
        """Finish warming up now (blocking), raising what it raised."""
        ...

    def close(self) -> None:
        """Release what it keeps warm; a later call may start it again."""
        ...


class NoWarmUp:
    """The lifecycle of a tool (or search backend) with nothing to keep warm, always offered."""

    def offered(self) -> bool:
        return True

    def start(self) -> None:
        return None

    def prepare(self) -> object:
        return None

    def close(self) -> None:
        return None


def cap_output(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """Cut `text` to `limit` characters, saying that it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 20].rstrip() + " …(output cut)"


@dataclass(frozen=True)
class Outcome:
    """What one call produced: a result or a one-line error, and how long it took."""

    result: str | None
    error: str | None
    duration_s: float

    @property
    def shown(self) -> str:
        return shown(self.result, self.error)


def shown(result: str | None, error: str | None) -> str:
    """What the model reads after the arrow: the result, or the error marked as one."""
    return result if result is not None else f"Error: {error}"


async def invoke(tool: Tool, argument: str, timeout_s: float) -> Outcome:
    """Run one call the way the model sees it: time-limited, capped, every failure a message.

    The engine and `agent-server tool` both go through here, so what a user debugs with the
    command is exactly what the model reads. The time limit holds even for a tool that swallows
    its cancellation (as a nested `asyncio.wait_for` can on Python 3.11): the call is cancelled
    and left to finish on its own, and its late result is dropped.
    """
    started = time.perf_counter()
    task = asyncio.ensure_future(tool(argument))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:  # the answer itself was cancelled: so is its call
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_drop)
        late = f"{tool.name} timed out after {timeout_s:g} s"
        return Outcome(None, late, time.perf_counter() - started)
    result: str | None = None
    error: str | None = None
    try:
        result = cap_output(task.result())
    except ToolError as exc:
        error = str(exc) or type(exc).__name__
    except Exception as exc:  # a bug in a tool must not end the answer
        error = f"{tool.name} failed internally ({type(exc).__name__})"
    return Outcome(result, error, time.perf_counter() - started)


def _drop(task: asyncio.Future[str]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so a late failure is not reported as never retrieved
