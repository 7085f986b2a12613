"""The chat UI: the static files of `web/` served at `/`, with a strict Content-Security-Policy.

The files are plain HTML, CSS and ES modules (no build step, nothing fetched from elsewhere).
They are the router's fallback, asked only when no route matched: every route wins, even one
added after `install`, and anything that is not a file there (an unknown `/v1/…` path, a POST
to `/`) is the app's usual JSON 404.

The policy allows scripts and styles from this origin only, so text the model writes can't run
even if a renderer slipped: the UI builds its DOM from text nodes and never parses model HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Beside the packages: in the source tree and, as package data, in an installed wheel.
WEB_DIR = Path(__file__).resolve().parents[2] / "web"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (ETag), so a new version of the UI is never half cached.
    "Cache-Control": "no-cache",
}


def public_paths(folder: Path = WEB_DIR) -> frozenset[str]:
    """The URL paths of the UI's files (and `/`): static code and styles, no data, so they load
    without an API key and the page can ask for one."""
    files = {f"/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()}
    return frozenset({"/", *files})


def install(app: FastAPI, folder: Path = WEB_DIR) -> None:
    """Serve `folder` at `/` (index.html for `/`) where no route matches."""
    router = app.router
    router.default = WebFiles(StaticFiles(directory=folder, html=True), router.default)


class WebFiles:
    """GET and HEAD of the static files, with the security headers; anything else goes on to
    `otherwise` (the router's 404)."""

    def __init__(self, files: ASGIApp, otherwise: ASGIApp) -> None:
        self.files = files
        self.otherwise = otherwise
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.otherwise(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *self.headers]}
            await send(message)

        await self.files(scope, receive, send_with_headers)
