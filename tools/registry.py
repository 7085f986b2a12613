"""The one place where tools are registered: names to constructors, built from options.

The registry is just a dict of name → tool. Options are a plain dataclass so that `tools`
does not depend on the service's settings; the service maps its settings onto it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from tools.base import Tool
from tools.calculator import Calculator


@dataclass(frozen=True)
class ToolOptions:
    calculator_timeout_s: float = 5.0


_FACTORIES: dict[str, Callable[[ToolOptions], Tool]] = {
    "Calculator": lambda o: Calculator(timeout_s=o.calculator_timeout_s),
}
TOOL_NAMES = tuple(_FACTORIES)


def build_registry(names: Iterable[str], options: ToolOptions | None = None) -> dict[str, Tool]:
    """Tools by name; an unknown name is an error that lists the known ones."""
    options = options or ToolOptions()
    wanted = list(names)
    unknown = [n for n in wanted if n not in _FACTORIES]
    if unknown:
        raise ValueError(f"unknown tools {unknown}; known: {list(TOOL_NAMES)}")
    return {name: _FACTORIES[name](options) for name in wanted}


def close_registry(tools: Mapping[str, Tool]) -> None:
    """Stop whatever processes the tools keep warm."""
    for tool in tools.values():
        close = getattr(tool, "close", None)
        if callable(close):
            close()
