"""WebGPT mode against real pages: a fixture web server on loopback (real HTTP, hostile pages
included), the local corpus, and the HTTP API end to end. The model is the scripted backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.events import FinalEvent
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.runtime import build_webgpt, open_pages
from agent_server.settings import Settings
from agent_server.webgpt.agent import WebGPT, WebGPTConfig
from agent_server.webgpt.browser import BrowserLimits
from agent_server.webgpt.pages import PageFetcher
from agent_server.webgpt.readable import Page, strip_link_markup
from tools.base import NoWarmUp
from tools.search import Search, SearchResult

QUESTION = "What is the capital of France?"


class FixtureSearch(NoWarmUp):
    """A search backend whose results are pages of the fixture web (the live web's stand-in)."""

    name = "fixture"
    min_interval_s = 0.0

    def __init__(self, base: str, paths: list[str]) -> None:
        self.results = [SearchResult(p.strip("/"), base + p, "…") for p in paths]

    async def search(self, _query: str, max_results: int) -> list[SearchResult]:
        return self.results[:max_results]


def fixture_agent(base: str, paths: list[str], *replies: object, **config: object):
    backend = ScriptedBackend(replies)  # type: ignore[arg-type]
    engine = Engine(backend, {}, Prompt("chat"))
    search = Search(FixtureSearch(base, paths), max_results=len(paths))
    fetcher = PageFetcher(timeout_s=1.0, max_bytes=200_000, allow_private=True)
    agent = WebGPT(
        engine,
        search.results,
        open_pages(search, fetcher),
        WebGPTConfig(**config),  # type: ignore[arg-type]
        on_close=fetcher.aclose,
    )
    return agent, engine, backend


def answer(agent: WebGPT, engine: Engine, question: str = QUESTION) -> FinalEvent:
    async def go() -> FinalEvent:
        try:
            events = [e async for e in agent.stream(question)]
        finally:
            await agent.aclose()
            engine.close()
        assert isinstance(events[-1], FinalEvent)
        return events[-1]

    return asyncio.run(go())


def test_builtin_policy_over_real_http_survives_hostile_pages(fixture_web):
    paths = ["/image.png", "/loop/a", "/slow", "/scripts", "/huge", "/article"]
    agent, engine, _ = fixture_agent(
        fixture_web,
        paths,
        "Paris is the capital of France [1][9].",
        limits=BrowserLimits(max_pages=6, max_quotes=6),
        time_limit_s=30,
    )
    final = answer(agent, engine)
    errors = {r.argument: r.error for r in final.trace if r.tool == "Click"}
    assert "it is not HTML or plain text (image/png)" in str(errors["0"])
    assert "too many redirects" in str(errors["1"])
    assert "did not arrive within 1 s" in str(errors["2"])
    assert errors["3"] is None and errors["4"] is None and errors["5"] is None
    article = next(q for q in final.quotes if q.url.endswith("/article"))
    assert article.title == "The Fixture Article"
    assert "Paris is the capital of France, and its largest city." in article.text
    page = asyncio.run(_fetch(f"{fixture_web}/article"))
    assert article.text in strip_link_markup(page.text)  # verbatim, as the page reads
    assert all("SCRIPT-TEXT" not in q.text and "STYLE-TEXT" not in q.text for q in final.quotes)
    assert article.number == 6 - 3  # pages 0-2 failed; scripts, huge and article were quoted
    assert final.answer == "Paris is the capital of France [1]."  # [9] named no quote


async def _fetch(url: str) -> Page:
    fetcher = PageFetcher(allow_private=True)
    try:
        return await fetcher.fetch(url)
    finally:
        await fetcher.aclose()


def test_model_driven_policy_uses_the_whole_command_set_on_real_pages(fixture_web):
    agent, engine, backend = fixture_agent(
        fixture_web,
        ["/article"],
        "Search capital of France",
        "Click 0",
        "Scroll down",
        "Scroll up",
        "Find in page largest city",
        "Click 0",  # the article's first link, to /other
        "Back",
        "Top",
        "Quote: PARIS is the capital of france … largest city.",
        "Quote: Paris is the capital of Spain.",
        "Fly to Paris",
        "End: Answer",
        "Paris [1].",
        policy="model",
    )
    final = answer(agent, engine)
    assert [r.tool for r in final.trace] == [
        "Search", "Click", "Scroll down", "Scroll up", "Find in page", "Click", "Back", "Top",
        "Quote", "Quote", "Invalid", "End",
    ]  # fmt: skip
    failed = {r.tool: r.error for r in final.trace if r.error}
    assert "already at the end" in str(failed["Scroll down"])
    assert "not on this page" in str(failed["Quote"])
    assert "not a command" in str(failed["Invalid"])
    opened_other = final.trace[5]
    assert opened_other.error is None and "opened" in str(opened_other.result)
    assert final.quotes[0].text == "Paris is the capital of France, and its largest city."
    assert final.answer == "Paris [1]."
    # Each step's prompt shows the page with its numbered links.
    assert "Paris is the capital of 【0†France】" in backend.prompts[2]


def test_local_corpus_pages_are_whole_documents_and_quotes_are_verbatim(tmp_path: Path):
    corpus = tmp_path / "corpus.jsonl"
    docs = [
        {"doc_id": "yushan", "title": "Yushan", "text": "Yushan is the highest mountain in "
         "Taiwan. " + "It has a national park named after it. " * 40},
        {"doc_id": "alps", "title": "Alps", "text": "The Alps are in Europe."},
    ]  # fmt: skip
    corpus.write_text("\n".join(json.dumps(d) for d in docs))
    settings = Settings(tools=[], search_backend="local", search_corpus=corpus)
    engine = Engine(ScriptedBackend(["Yushan [1]."]), {}, Prompt("chat"))
    agent = build_webgpt(settings, engine)
    final = answer(agent, engine, "What is the highest mountain in Taiwan?")
    assert final.trace[1].tool == "Click" and final.trace[1].error is None
    assert final.quotes[0].url == "doc://yushan"
    assert final.quotes[0].text.startswith("Yushan is the highest mountain in Taiwan.")
    assert final.quotes[0].text in docs[0]["text"]
    assert final.answer == "Yushan [1]."


@pytest.fixture
def webgpt_client(fixture_web):
    backend = ScriptedBackend()

    def factory(_settings: Settings, engine: Engine) -> WebGPT:
        search = Search(FixtureSearch(fixture_web, ["/article", "/plain"]), max_results=2)
        fetcher = PageFetcher(timeout_s=2.0, allow_private=True)
        return WebGPT(engine, search.results, open_pages(search, fetcher), on_close=fetcher.aclose)

    app = create_app(Settings(tools=[]), lambda _: Engine(backend, {}, Prompt("chat")), factory)
    for client in serve(app):
        wait_ready(client)
        yield client, backend, fixture_web


def test_the_api_streams_browsing_and_returns_and_stores_references(webgpt_client):
    client, backend, web = webgpt_client
    backend.queue("Paris is the capital [1] of France [3].")
    body = {"question": QUESTION, "mode": "webgpt", "stream": True}
    response = client.post("/v1/ask", json=body)
    assert response.status_code == 200
    events = []
    for block in response.text.split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            events.append((lines["event"], json.loads(lines["data"])))
    calls = [data["tool"] for kind, data in events if kind == "call"]
    assert calls[:2] == ["Search", "Click"] and calls[-1] == "End"
    final = events[-1][1]
    assert events[-1][0] == "final"
    assert final["answer"] == "Paris is the capital [1] of France."
    quote = final["quotes"][0]
    assert (quote["number"], quote["title"], quote["url"]) == (
        1,
        "The Fixture Article",
        f"{web}/article",
    )
    assert "Paris is the capital of France, and its largest city." in quote["text"]
    assert final["references"][0]["numbers"] == [1]
    assert final["references"][0]["domain"] == "127.0.0.1"
    stored = client.get(f"/v1/conversations/{final['conversation_id']}").json()
    turn = stored["turns"][0]
    assert turn["mode"] == "webgpt"
    assert turn["quotes"] == final["quotes"] and turn["references"] == final["references"]
