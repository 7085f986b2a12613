"""Errors the service raises on purpose, each with a message a user can act on.

    AgentError
      ├── ModelNotAvailable   the configured model cannot be found, verified or loaded
      └── BadRequest          a request names something that does not exist (a tool, a mode)

Errors from third-party libraries are wrapped at the boundary with `raise … from exc`.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of the service's own errors."""


class ModelNotAvailable(AgentError):
    """The configured model cannot be found, verified or loaded."""


class BadRequest(AgentError):
    """The request is well-formed but asks for something that does not exist."""
