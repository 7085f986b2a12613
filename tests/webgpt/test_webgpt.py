"""WebGPT mode with the scripted model: both policies, the budget, and checked citations.

Search and pages are in-memory fakes at the agent's seams; real HTTP and the local corpus are
in test_webgpt_web.py, the real model in test_webgpt_model.py.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_server.core.events import CallEvent, FinalEvent, ResultEvent, TokenEvent
from agent_server.errors import BrowserError
from agent_server.webgpt.agent import NO_SOURCES, WebGPT, WebGPTConfig, best_passage
from agent_server.webgpt.browser import BrowserLimits
from agent_server.webgpt.readable import Page, plain_page
from tools.search import SearchResult

QUESTION = "What is the highest mountain in Taiwan?"
PAGES = {
    "https://a.example/yushan": plain_page(
        "Taiwan has many peaks. Yushan is the highest mountain in Taiwan, at 3,952 m. "
        "Its name means Jade Mountain.",
        "https://a.example/yushan",
        "Yushan",
    ),
    "https://b.example/alps": plain_page(
        "The Alps are the highest mountain range in Europe.", "https://b.example/alps", "Alps"
    ),
}


async def search(_query: str) -> list[SearchResult]:
    return [
        SearchResult("Yushan", "https://a.example/yushan", "Yushan is the highest…"),
        SearchResult("Broken", "https://c.example/broken", "…"),
        SearchResult("Alps", "https://b.example/alps", "The Alps are…"),
    ]


async def open_page(url: str) -> Page:
    if url not in PAGES:
        raise BrowserError(f"could not open {url}: HTTP 500")
    return PAGES[url]


@pytest.fixture
def agent(make_engine):
    def make(*replies, open_page=open_page, **config):
        engine, backend = make_engine(*replies, tools=[])
        return WebGPT(engine, search, open_page, WebGPTConfig(**config)), backend

    return make


def run(agent: WebGPT, **kwargs):
    async def go():
        return [e async for e in agent.stream(QUESTION, **kwargs)]

    events = asyncio.run(go())
    final = events[-1]
    assert isinstance(final, FinalEvent)
    return events, final


def commands(final: FinalEvent) -> list[str]:
    return [f"{r.tool} {r.argument}".strip() for r in final.trace]


def test_builtin_policy_searches_opens_quotes_and_answers_with_valid_markers(agent):
    webgpt, backend = agent("Yushan is the highest mountain in Taiwan [1], not the Alps [2][7].")
    events, final = run(webgpt)
    assert commands(final) == [
        f"Search {QUESTION}",
        "Click 0",
        "Quote Taiwan has many peaks. Yushan is the highest mountain in Taiwan, at 3,952 m. "
        "Its name means Jade Mountain.",
        "Back",
        "Click 1",
        "Click 2",
        "Quote The Alps are the highest mountain range in Europe.",
        "Back",
        "End",
    ]
    broken = final.trace[4]
    assert broken.error == "could not open https://c.example/broken: HTTP 500"
    assert [q.url for q in final.quotes] == ["https://a.example/yushan", "https://b.example/alps"]
    assert final.answer == "Yushan is the highest mountain in Taiwan [1], not the Alps [2]."
    streamed = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert streamed == final.answer and "[7]" not in streamed
    # The answering prompt holds the question and the quotes, as WebGPT's did.
    assert "[1] Yushan (a.example)\nTaiwan has many peaks. Yushan is" in backend.prompts[-1]
    assert f"Question: {QUESTION}" in backend.prompts[-1]
    calls = [e for e in events if isinstance(e, CallEvent)]
    results = [e for e in events if isinstance(e, ResultEvent)]
    assert [c.tool for c in calls] == [r.tool for r in results] == [r.tool for r in final.trace]


def test_model_driven_policy_reads_the_state_and_writes_each_command(agent):
    webgpt, backend = agent(
        "Search highest mountain Taiwan",
        "Click 0",
        "Quote: Yushan is the highest mountain in Taiwan",
        "End: Answer",
        "It is Yushan [1].",
        policy="model",
    )
    _, final = run(webgpt)
    assert commands(final) == [
        "Search highest mountain Taiwan",
        "Click 0",
        "Quote Yushan is the highest mountain in Taiwan",
        "End",
    ]
    assert all(r.error is None for r in final.trace)
    assert final.answer == "It is Yushan [1]."
    assert final.quotes[0].text == "Yushan is the highest mountain in Taiwan"
    # The model saw the page it had opened before quoting from it.
    assert "Current page: Yushan (https://a.example/yushan)" in backend.prompts[2]
    assert "Actions left: 14." in backend.prompts[2]


def test_invalid_commands_use_up_the_budget_and_no_quote_means_no_answer(agent):
    webgpt, backend = agent(*["Let me think."] * 5, policy="model", max_actions=3)
    events, final = run(webgpt)
    assert len(final.trace) == 3
    assert all("not a command" in (r.error or "") for r in final.trace)
    assert final.answer.startswith(NO_SOURCES)
    assert "Browsing stopped at its action limit (3 actions)" in final.answer
    assert final.stop_reason == "action" and final.answer.endswith(final.note)
    assert final.note.startswith("(Browsing stopped") and final.note.endswith(".)")
    assert final.quotes == ()
    assert len(backend.prompts) == 3  # no answer was generated from nothing


def test_time_limit_stops_browsing_and_the_answer_says_so(agent):
    async def slow_open(url: str) -> Page:
        if "alps" in url:
            await asyncio.Event().wait()  # a page that never loads: only the time limit ends it
        return await open_page(url)

    webgpt, _ = agent("Yushan [1].", open_page=slow_open, time_limit_s=0.5)
    _, final = run(webgpt)
    assert final.trace[-1].error == "time limit reached"
    assert len(final.quotes) == 1
    assert final.answer.startswith("Yushan [1].")
    assert "Browsing stopped at its time limit (0.5 s)" in final.answer
    assert final.stop_reason == "time"
    # The note is a field too, so nothing needs to find it in the text (the QA eval drops it).
    assert final.answer.removesuffix(final.note).rstrip() == "Yushan [1]."


def test_an_answer_without_markers_cites_the_quote_it_draws_on(agent):
    webgpt, _ = agent(
        "The Alps are the highest range in Europe.", limits=BrowserLimits(max_quotes=4)
    )
    _, final = run(webgpt)
    assert final.answer == "The Alps are the highest range in Europe. [2]"


def test_best_passage_is_a_verbatim_span_around_the_best_sentence():
    text = "Intro words here. The tallest peak is Yushan. Unrelated closing text follows."
    passage = best_passage(text, "What is the tallest peak?", max_chars=30)
    assert passage == "The tallest peak is Yushan."
    widened = best_passage(text, "What is the tallest peak?", max_chars=50)
    assert widened == "Intro words here. The tallest peak is Yushan."
    assert best_passage("   ", "anything") == ""
