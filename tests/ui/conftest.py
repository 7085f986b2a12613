"""Browser fixtures: Debian's Chromium driven by Playwright, the real app served on loopback.

Chromium is the system's (`make browser` installs it with apt-get); Playwright's own browser
download is never used. The sync API runs its event loop in the test's thread; uvicorn serves
the app from its own thread (`serving.serve`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chat_page import CHROMIUM, CHROMIUM_ARGS, DESKTOP, Served
from doubles import EchoTool, RefusingTool, SlowTool
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings
from tools.base import Tool

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: `make browser` installs Debian's chromium package")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Pages in fresh contexts; each fails its test if the page's script threw or the page broke
    its Content-Security-Policy."""
    contexts, errors = [], []

    def new(viewport: dict[str, int] = DESKTOP, color_scheme: str = "light") -> Page:
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(error))
        page.on(
            "console",
            lambda message: "Content Security Policy" in message.text and errors.append(message),
        )
        page.on("dialog", lambda dialog: dialog.accept())  # "Delete …?" confirmations
        return page

    yield new
    for context in contexts:
        context.close()
    assert not errors, f"the page's script threw: {errors}"


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    return new_page()


@pytest.fixture
def start_app() -> Iterator[Callable[..., Served]]:
    """Start the app (scripted model, test-double tools) under uvicorn; stopped at teardown."""
    running: list[Served] = []

    def start(
        settings: Settings | None = None,
        tools: list[Tool] | None = None,
        backend: ScriptedBackend | None = None,
        port: int = 0,
        factory: Callable[[Settings], Engine] | None = None,
        ready: bool = True,
        **create_options: Any,
    ) -> Served:
        backend = backend or ScriptedBackend()
        chosen = tools if tools is not None else [EchoTool(), SlowTool(), RefusingTool()]
        registry = {t.name: t for t in chosen}
        app = create_app(
            settings or Settings(tools=[]),
            factory or (lambda _: Engine(backend, registry, Prompt("chat"))),
            **create_options,
        )
        server = serve(app, port=port)
        client = next(server)
        served = Served(str(client.base_url), client, backend, client.base_url.port or 0, server)
        running.append(served)
        if ready:
            wait_ready(client)
        return served

    yield start
    for served in running:
        served.stop()


@pytest.fixture
def app(start_app: Callable[..., Served]) -> Served:
    return start_app()
