"""Test-double tools at the `Tool` seam (imported by name: pytest puts this folder on sys.path).

Kept out of `conftest.py`: with a conftest in `tests/tools/` too, `import conftest` would find
whichever was imported first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from tools.base import NoWarmUp, ToolError
from tools.embedder import Embedder, Progress, Vectors


class EchoTool(NoWarmUp):
    """Returns its argument reversed, so a test can tell a result from the argument."""

    name = "Echo"
    description = "Echoes its input backwards."
    example = '"abc"'
    parameters = None

    async def __call__(self, argument: str) -> str:
        return argument[::-1]


class RefusingTool(NoWarmUp):
    name = "Refuse"
    description = "Always refuses."
    example = "x"
    parameters = None

    async def __call__(self, argument: str) -> str:
        raise ToolError(f"cannot handle {argument!r}")


class BrokenTool(NoWarmUp):
    name = "Broken"
    description = "Has a bug."
    example = "x"
    parameters = None

    async def __call__(self, argument: str) -> str:
        raise RuntimeError(f"bug with {argument}")


class SlowTool(NoWarmUp):
    name = "Slow"
    description = "Takes its time."
    example = "1"
    parameters = None

    async def __call__(self, argument: str) -> str:
        await asyncio.sleep(float(argument))
        return "done"


class PrintingPython(NoWarmUp):
    """Stands in for the Python sandbox: "runs" a program by returning what its last `print(…)`
    holds, as written (`print(7)` → "7"); a program without one fails as Python would not."""

    name = "Python"
    description = "Runs Python code."
    example = "print(1)"
    parameters = None

    def __init__(self) -> None:
        self.programs: list[str] = []

    async def __call__(self, argument: str) -> str:
        self.programs.append(argument)
        at = argument.rfind("print(")
        if at < 0:
            raise ToolError("NameError: name 'answer' is not defined (line 1)")
        return argument[at + len("print(") : argument.rfind(")")]


class GatedEmbedder(Embedder):
    """The real embedder behind a gate: embedding waits until the test opens it."""

    def __init__(self, real: Embedder) -> None:
        super().__init__(real.folder)
        self.real = real
        self.gate = threading.Event()

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        """Reports the first half done, then waits at the gate for the rest."""
        if progress is not None and len(texts) > 1:
            progress(len(texts) // 2, len(texts))
        self.gate.wait(timeout=60)
        self.calls += len(texts)
        return self.real.embed(texts, progress)
