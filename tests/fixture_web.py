"""A small web of fixture pages, served for real on loopback, for tests that browse.

The `fixture_web` fixture is the base URL, e.g. "http://127.0.0.1:PORT", one server per test
session; `tests/conftest.py` registers this module as a plugin, so every test can ask for it.
Outside pytest, `fixture_web_server()` is the same as a context manager; `build_fixture_app()`
is the app itself.

Routes:
    /article              an article: title, nav, main with relative and absolute links, footer
    /other                a plain page the article links to
    /scripts              big inline scripts and styles, hidden elements (none of it readable)
    /huge                 20 MB of HTML, streamed
    /image.png            PNG bytes, image/png
    /mislabeled           PNG bytes declared text/html
    /octet                HTML declared application/octet-stream
    /untyped              binary bytes without a content type
    /untyped-html         HTML without a content type
    /plain                text/plain
    /latin1               HTML in latin-1, declared only in the Content-Type header
    /headers              text/plain: the Host and User-Agent the server received
    /redirect/a           -> /redirect/b -> /article
    /loop/a               -> /loop/b -> /loop/a ...
    /redirect/ftp         -> ftp://127.0.0.1/file
    /slow                 answers after 5 s
    /trickle              sends a byte every 0.2 s for a minute
    /missing              404 with an HTML body
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from serving import serve
from starlette.responses import StreamingResponse

HUGE_BYTES = 20_000_000
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"

ARTICLE = """<!doctype html>
<html><head><title>The Fixture Article</title><meta charset="utf-8"></head>
<body>
<nav><a href="/">Home</a> <a href="/about">About us</a></nav>
<main>
<h1>Paris in spring</h1>
<p>Paris is the capital of <a href="/other">France</a>, and its largest city.</p>
<p>See also <a href="https://en.wikipedia.org/wiki/Paris">Paris on Wikipedia</a>
and <a href="javascript:alert(1)">a script link</a>.</p>
<ul><li>Museums: <a href="other?section=museums">the Louvre</a></li><li>Parks</li></ul>
</main>
<footer>Copyright notice <a href="/legal">Legal</a></footer>
</body></html>"""

SCRIPTS = """<!doctype html>
<html><head><title>Scripts</title><style>body { color: red } /* STYLE-TEXT */</style>
<script>var inHead = "HEAD-SCRIPT-TEXT";</script></head>
<body>
<script>{script}</script>
<p>Visible paragraph.</p>
<div hidden>HIDDEN-ATTRIBUTE-TEXT</div>
<div style="display:none">DISPLAY-NONE-TEXT</div>
<span aria-hidden="true">ARIA-HIDDEN-TEXT</span>
<noscript>NOSCRIPT-TEXT</noscript>
<template><p>TEMPLATE-TEXT</p></template>
<!-- COMMENT-TEXT -->
<form><input type="hidden" value="INPUT-TEXT"><button>BUTTON-TEXT</button></form>
<p>Visible too.</p>
<script>{script}</script>
</body></html>"""


def build_fixture_app() -> FastAPI:
    """The fixture pages (see the module docstring for the routes)."""
    app = FastAPI()

    @app.get("/article")
    async def article() -> HTMLResponse:
        return HTMLResponse(ARTICLE)

    @app.get("/other")
    async def other() -> HTMLResponse:
        return HTMLResponse("<html><head><title>Other</title></head><body><p>Other page.</p>")

    @app.get("/scripts")
    async def scripts() -> HTMLResponse:
        script = "var SCRIPT_TEXT = 1;\n" * 20_000  # about 400 kB of it, twice
        return HTMLResponse(SCRIPTS.replace("{script}", script))

    @app.get("/huge")
    async def huge() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"<html><head><title>Huge</title></head><body>"
            chunk = b"".join(b"<p>Paragraph %d of a huge page.</p>\n" % i for i in range(2000))
            for _ in range(HUGE_BYTES // len(chunk)):
                yield chunk
                await asyncio.sleep(0)  # lets a disconnect end the stream

        return StreamingResponse(body(), media_type="text/html")

    @app.get("/image.png")
    async def image() -> Response:
        return Response(PNG * 100, media_type="image/png")

    @app.get("/mislabeled")
    async def mislabeled() -> Response:
        return Response(PNG * 100, media_type="text/html")

    @app.get("/octet")
    async def octet() -> Response:
        return Response(ARTICLE.encode(), media_type="application/octet-stream")

    @app.get("/untyped")
    async def untyped() -> Response:
        return Response(PNG * 100)

    @app.get("/untyped-html")
    async def untyped_html() -> Response:
        return Response(ARTICLE.encode())

    @app.get("/plain")
    async def plain() -> PlainTextResponse:
        return PlainTextResponse("First   line\n\n\n\nSecond\tline 【0†not a link】\n")

    @app.get("/latin1")
    async def latin1() -> Response:
        html = "<html><head><title>Café</title></head><body><p>Crème brûlée à Paris</p></body>"
        return Response(html.encode("latin-1"), media_type="text/html; charset=iso-8859-1")

    @app.get("/headers")
    async def headers(request: Request) -> PlainTextResponse:
        seen = request.headers
        return PlainTextResponse(f"host={seen.get('host')}\nuser-agent={seen.get('user-agent')}")

    @app.get("/redirect/a")
    async def redirect_a() -> RedirectResponse:
        return RedirectResponse("/redirect/b", status_code=302)

    @app.get("/redirect/b")
    async def redirect_b() -> RedirectResponse:
        return RedirectResponse("../article", status_code=301)

    @app.get("/loop/{name}")
    async def loop(name: str) -> RedirectResponse:
        return RedirectResponse("/loop/b" if name == "a" else "/loop/a", status_code=307)

    @app.get("/redirect/ftp")
    async def redirect_ftp() -> RedirectResponse:
        return RedirectResponse("ftp://127.0.0.1/file", status_code=302)

    @app.get("/slow")
    async def slow(request: Request) -> HTMLResponse:
        for _ in range(100):  # 5 s, ended early once the client has gone
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.05)
        return HTMLResponse("<p>Finally.</p>")

    @app.get("/trickle")
    async def trickle() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"<html><body><p>"
            for _ in range(300):
                await asyncio.sleep(0.2)
                yield b"x"

        return StreamingResponse(body(), media_type="text/html")

    @app.get("/missing")
    async def missing() -> HTMLResponse:
        return HTMLResponse("<h1>Not here</h1>", status_code=404)

    return app


@contextlib.contextmanager
def fixture_web_server() -> Iterator[str]:
    """The fixture pages served on loopback: the base URL, without a trailing slash."""
    clients = serve(build_fixture_app())
    try:
        yield str(next(clients).base_url).rstrip("/")
    finally:
        clients.close()  # stops the server


@pytest.fixture(scope="session")
def fixture_web() -> Iterator[str]:
    """The base URL of the fixture pages, served on loopback for the test session."""
    with fixture_web_server() as base:
        yield base
