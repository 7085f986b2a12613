"""The tool belt: one module per tool, the `Tool` protocol, and the registry built from settings."""

from tools.base import MAX_RESULT_CHARS, Tool, ToolError, ToolTimeout, cap_output
from tools.registry import TOOL_NAMES, ToolOptions, build_registry, close_registry

__all__ = [
    "MAX_RESULT_CHARS",
    "TOOL_NAMES",
    "Tool",
    "ToolError",
    "ToolOptions",
    "ToolTimeout",
    "build_registry",
    "cap_output",
    "close_registry",
]
