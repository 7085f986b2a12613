"""The HTTP service's own middleware, pure ASGI (BaseHTTPMiddleware breaks streaming and
cancellation). `install` adds them in this order, outermost first:

    AccessMiddleware      request id (X-Request-ID in and out, `request_id` contextvar), one JSON
                          access-log line and the request metrics per request, a JSON 500
    CORSMiddleware        Starlette's, from `cors_origins` (none: no CORS headers at all)
    ApiKeyMiddleware      `Authorization: Bearer <key>` when `api_keys` is set, else 401
    BodyLimitMiddleware   413 for a body over `max_body_bytes`, declared or streamed
    the app               (its exception handlers turn Overloaded into 429, RequestTimeout 504)

Access is outermost so that every response, the 401/413/429 ones included, carries its
request id and is logged and counted. CORS sits outside the key check: a browser's preflight
carries no key, and a 401 without CORS headers would be unreadable to the page.

With `api_keys` set, only `/healthz` and `/readyz` stay open (probes hold no secrets).
`/metrics` needs a key too: it reveals traffic and tool use, and Prometheus sends one with
`authorization: {credentials: …}` in its scrape config.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Collection, Sequence
from contextvars import ContextVar

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_server.http import web_ui
from agent_server.http.metrics import Metrics
from agent_server.http.schemas import ErrorBody
from agent_server.settings import Settings

access_log = logging.getLogger("agent_server.access")
# The current request's id, for any log line written while it is handled ("-": outside one).
request_id: ContextVar[str] = ContextVar("request_id", default="-")
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# An incoming id is kept only if it is short and plain: it goes into headers and log lines.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def install(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Add the middleware to `app` (Starlette makes the last one added the outermost)."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_keys:
        keys = [k.get_secret_value() for k in settings.api_keys]
        # The chat UI's own files hold no data: the page must load to ask for a key.
        app.add_middleware(ApiKeyMiddleware, keys=keys, public_files=web_ui.public_paths())
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(AccessMiddleware, metrics=metrics)


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            # Returns once the last body chunk is sent, so a stream is timed to its end.
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not status:  # answer in JSON, with the id; the server still logs the traceback
                await error_response(500, "internal server error")(scope, receive, send_with_id)
            raise
        finally:
            self._record(scope, status or 500, time.perf_counter() - started, rid)
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float, rid: str) -> None:
        route = route_template(scope)
        self.metrics.observe_request(route, scope["method"], status, seconds)
        client = scope.get("client")
        line = {
            "request_id": rid,
            "method": scope["method"],
            "route": route,
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "client": client[0] if client else None,
        }
        access_log.info(json.dumps(line))


class ApiKeyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        keys: Sequence[str],
        open_paths: Collection[str] = OPEN_PATHS,
        public_files: Collection[str] = (),  # open to GET and HEAD only
    ) -> None:
        if not keys or not all(keys):
            raise ValueError("API keys must be non-empty")
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.open_paths = open_paths
        self.public_files = public_files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope) if scope["type"] == "http" else ""
        public = path in self.public_files and scope.get("method") in ("GET", "HEAD")
        if scope["type"] != "http" or path in self.open_paths or public:
            await self.app(scope, receive, send)
            return
        scheme, _, given = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and self._known(given.strip().encode("latin-1")):
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer error="invalid_token"' if given else "Bearer"
        response = error_response(
            401,
            "missing or unknown API key: send the header 'Authorization: Bearer <key>'",
            {"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)

    def _known(self, given: bytes) -> bool:
        known = False
        for key in self.keys:  # every key, every time: the time taken says nothing
            known |= hmac.compare_digest(given, key)
        return known


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
            else:  # the server holds the body to its declared length
                await self.app(scope, receive, send)
            return
        # No length declared (chunked): read the body here, up to the limit, then replay it.
        # An app could otherwise have read and acted on part of it before the limit was hit.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is larger than {self.max_bytes} bytes (max_body_bytes)"
        # The rest of the body is never read, so this connection can't carry another request.
        response = error_response(413, message, {"Connection": "close"})
        await response(scope, receive, send)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The service's error shape, `{"error": …}`, for responses made outside the routes."""
    return JSONResponse(ErrorBody(error=message).model_dump(), status, headers)


def route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/conversations/{conversation_id}`), never the raw
    path; for a request refused before routing (401, 413), the route it would have reached."""
    route = scope.get("route")
    if route is None:
        routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
        matches = [(r.matches(scope)[0], r) for r in routes]
        route = next((r for m, r in matches if m is Match.FULL), None) or next(
            (r for m, r in matches if m is Match.PARTIAL), None
        )
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else "unmatched"


def _route_path(scope: Scope) -> str:
    """The path below the app's mount point (ASGI puts `root_path` in front of `path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
