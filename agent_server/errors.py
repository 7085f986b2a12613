"""Errors the service raises on purpose, each with a message a user can act on.

    AgentError
      ├── ModelNotAvailable   the configured model cannot be found, verified or loaded
      ├── ModelBusy           the model has no room for another answer right now (503)
      ├── StoreUnavailable    the database cannot be reached right now (503)
      ├── ConfigError         the settings ask for something that cannot be built
      ├── BadRequest          a request is well-formed but cannot be served as asked (400)
      ├── NotFound            the named resource does not exist (404)
      └── Conflict            the service's configuration does not allow the request (409)

Errors from third-party libraries are wrapped at the boundary with `raise … from exc`.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of the service's own errors."""


class ModelNotAvailable(AgentError):
    """The configured model cannot be found, verified or loaded."""


class ModelBusy(AgentError):
    """The model has no room for another answer right now (its context or sequences are full)."""


class StoreUnavailable(AgentError):
    """The database (PostgreSQL) cannot be reached right now; the request may be retried."""


class ConfigError(AgentError):
    """The settings ask for something that cannot be built (a tool without its corpus)."""


class BadRequest(AgentError):
    """The request is well-formed but asks for something that does not exist."""


class NotFound(AgentError):
    """The named resource (a conversation, a document) does not exist."""


class Conflict(AgentError):
    """The service's configuration does not allow the request (uploads without a folder)."""
