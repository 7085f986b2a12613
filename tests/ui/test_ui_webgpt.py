"""WebGPT mode in the page: browsing steps as cards, `[n]` markers linked to numbered quotes
under the answer (title, URL, domain, quoted text), the same after a reload.

The pages are the fixture web on loopback (real HTTP); the search results point at it and the
model is scripted."""

from __future__ import annotations

import re

import pytest
from chat_page import SCREENSHOTS, ask, png_size
from fixture_web import fixture_web  # noqa: F401 (a fixture)
from playwright.sync_api import Page, expect

from agent_server.settings import Settings

QUESTION = "What is the capital of France?"


@pytest.fixture
def webgpt_app(start_app, fixture_web):  # noqa: F811 (the fixture imported above)
    from agent_server.core.engine import Engine
    from agent_server.runtime import open_pages
    from agent_server.webgpt.agent import WebGPT
    from agent_server.webgpt.pages import PageFetcher
    from tools.base import NoWarmUp
    from tools.search import Search, SearchResult

    class FixtureSearch(NoWarmUp):
        name = "fixture"
        min_interval_s = 0.0

        async def search(self, query: str, max_results: int) -> list[SearchResult]:  # noqa: ARG002
            paths = ["/article", "/plain"]
            return [SearchResult(p.strip("/"), fixture_web + p, "…") for p in paths]

    def webgpt_factory(_: Settings, engine: Engine) -> WebGPT:
        search = Search(FixtureSearch(), max_results=2)
        fetcher = PageFetcher(timeout_s=2.0, allow_private=True)
        return WebGPT(engine, search.results, open_pages(search, fetcher), on_close=fetcher.aclose)

    return start_app(tools=[], webgpt_factory=webgpt_factory), fixture_web


def test_webgpt_answers_link_their_markers_to_the_quotes_they_cite(page: Page, webgpt_app):
    app, web = webgpt_app
    app.backend.queue("Paris is the capital [1] of France.")
    page.goto(app.url)
    page.get_by_label("WebGPT").check()
    ask(page, QUESTION)

    answer = page.locator(".answer")
    expect(answer.locator(".answer-footer")).to_be_visible()
    # The browsing steps fold into one line that opens to them; the references stay in view.
    browsing = answer.locator(".browsing")
    expect(browsing.locator(".browsing-summary")).to_have_text(
        re.compile(r"^Searched \d+ times?, read \d+ pages?, kept \d+ quotes?$")
    )
    expect(browsing.locator(".card").first).to_be_hidden()
    browsing.locator(".browsing-summary").click()
    expect(browsing.locator(".card").first).to_be_visible()
    tools = answer.locator(".card .tool")
    expect(tools.first).to_have_text("Search")
    expect(tools.nth(1)).to_have_text("Click")
    expect(tools.last).to_have_text("End")
    expect(answer.locator(".body")).to_have_text("Paris is the capital [1] of France.")

    (conversation,) = app.client.get("/v1/conversations").json()
    turn = app.client.get(f"/v1/conversations/{conversation['id']}").json()["turns"][0]
    assert turn["mode"] == "webgpt"
    (quote,) = [q for q in turn["quotes"] if q["number"] == 1]

    for _ in range(2):  # as answered, then reopened after a reload
        answer = page.locator(".answer")
        answer_id = answer.get_attribute("id")
        expect(answer.locator(".card")).to_have_count(len(turn["trace"]))  # one per step
        marker = answer.locator(".body a.cite")
        expect(marker).to_have_text("[1]")
        expect(marker).to_have_attribute("href", f"#{answer_id}-ref-1")
        source = page.locator(f"#{answer_id}-ref-1")
        expect(source.locator("blockquote")).to_have_text(quote["text"])
        assert "Paris is the capital of France" in quote["text"]
        link = source.get_by_role("link", name=quote["title"])
        expect(link).to_have_attribute("href", f"{web}/article")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        expect(source.locator(".domain")).to_have_text("127.0.0.1")
        marker.click()
        assert page.evaluate("location.hash") == f"#{answer_id}-ref-1"
        expect(source).to_be_in_viewport()
        page.reload()
        page.locator(".conversation", has_text=QUESTION).click()
    expect(page.get_by_label("WebGPT")).to_be_checked()  # the mode is remembered
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "webgpt-desktop-light.png")
    assert png_size(SCREENSHOTS / "webgpt-desktop-light.png")[0] == 1280
