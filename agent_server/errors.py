"""Errors the service raises on purpose, each with a message a user can act on and the HTTP
status it is answered with (both routes map them through `status`, `kind` and `headers`).

    AgentError (500)          a bug if it reaches a client: nothing here raises it bare
      ├── ModelNotAvailable   the configured model cannot be found, verified or loaded (503)
      ├── NotReady            the model is still loading, or failed to (503, Retry-After)
      ├── ModelBusy           the model has no room for another answer right now (503, Retry-After)
      ├── StoreUnavailable    the database cannot be reached right now (503, Retry-After)
      ├── Overloaded          the queue for the model is full (429, Retry-After)
      ├── RequestTimeout      an answer took longer than `request_timeout_s` (504)
      ├── ConfigError         the settings ask for something that cannot be built (500)
      ├── BadRequest          a request is well-formed but cannot be served as asked (400)
      │     └── InvalidRequest    one OpenAI's API would refuse too, with its error fields
      ├── NotFound            the named resource does not exist (404)
      │     └── ConversationNotFound
      ├── Conflict            the service's configuration does not allow the request (409)
      ├── PageError           a web page could not be fetched or read (502; WebGPT's observation)
      └── BrowserError        a browsing command cannot be carried out (400; WebGPT's observation)

Errors from third-party libraries are wrapped at the boundary with `raise … from exc`.
"""

from __future__ import annotations

RETRY_AFTER_S = 5  # what a client is told to wait while the model loads or is busy


class AgentError(Exception):
    """Base of the service's own errors."""

    status: int = 500
    # OpenAI's error `type` for it (the OpenAI route answers in OpenAI's shape).
    kind: str = "server_error"
    retry_after_s: int | None = None
    param: str | None = None  # the request field at fault, when one is
    code: str | None = None  # a machine-readable code (OpenAI's `code`)

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


class ModelNotAvailable(AgentError):
    """The configured model cannot be found, verified or loaded."""

    status = 503
    kind = "service_unavailable"


class NotReady(AgentError):
    """The model is still loading (or failed to load)."""

    status = 503
    kind = "service_unavailable"
    retry_after_s = RETRY_AFTER_S


class ModelBusy(AgentError):
    """The model has no room for another answer right now (its context or sequences are full)."""

    status = 503
    kind = "service_unavailable"
    retry_after_s = RETRY_AFTER_S


class StoreUnavailable(AgentError):
    """The database (PostgreSQL) cannot be reached right now; the request may be retried."""

    status = 503
    kind = "service_unavailable"
    retry_after_s = RETRY_AFTER_S


class Overloaded(AgentError):
    """The queue for the model is full; try again after `retry_after_s` seconds."""

    status = 429
    kind = "rate_limit_error"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeout(AgentError):
    """A request took longer than its time limit (`request_timeout_s`)."""

    status = 504
    kind = "timeout"


class ConfigError(AgentError):
    """The settings ask for something that cannot be built (a tool without its corpus)."""


class BadRequest(AgentError):
    """The request is well-formed but asks for something that does not exist."""

    status = 400
    kind = "invalid_request_error"


class InvalidRequest(BadRequest):
    """A request OpenAI's API would refuse too; carries OpenAI's error fields."""

    def __init__(
        self, message: str, param: str | None = None, code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.status = status  # a model that does not exist is a 404


class NotFound(AgentError):
    """The named resource (a conversation, a document) does not exist."""

    status = 404
    kind = "invalid_request_error"


class ConversationNotFound(NotFound):
    """No conversation has this id (or it is not an id at all)."""


class Conflict(AgentError):
    """The service's configuration does not allow the request (uploads without a folder)."""

    status = 409
    kind = "invalid_request_error"


class PageError(AgentError):
    """A page could not be fetched or read; the message is one line for the model."""

    status = 502


class BrowserError(AgentError):
    """A browsing command cannot be carried out; the message says why, for the model."""

    status = 400
    kind = "invalid_request_error"
