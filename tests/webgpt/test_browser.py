"""The text browser's commands and state, over in-memory search results and pages (a fake at
the browser's two seams: `search` and `open_page`; pages over real HTTP are in test_webgpt_web)."""

from __future__ import annotations

import asyncio

import pytest

from agent_server.errors import BrowserError
from agent_server.webgpt.browser import (
    BrowserLimits,
    Command,
    TextBrowser,
    find_span,
    parse_command,
)
from agent_server.webgpt.readable import Page, plain_page, readable
from tools.search import SearchResult

MOUNTAIN = (
    "Yushan, also called Jade Mountain, is the highest mountain in Taiwan at 3,952 m.\n"
    "It lies in Yushan National Park.\n" + "\n".join(f"Filler line {i}." for i in range(30))
)
PAGES = {
    "https://example.org/yushan": plain_page(MOUNTAIN, "https://example.org/yushan", "Yushan"),
    "https://example.org/links": readable(
        '<title>Links</title><p>See <a href="/yushan">the mountain page</a> for more.</p>',
        "https://example.org/links",
    ),
}


async def search(_query: str) -> list[SearchResult]:
    return [
        SearchResult("Yushan", "https://example.org/yushan", "Yushan is the highest…"),
        SearchResult("Links", "https://example.org/links", "See the mountain page"),
        SearchResult("Gone", "https://example.org/gone", "not there"),
    ]


async def open_page(url: str) -> Page:
    if url not in PAGES:
        raise BrowserError(f"could not open {url}: 404")
    return PAGES[url]


def do(b: TextBrowser, command: Command) -> str:
    return asyncio.run(b.run(command))


def browser(**limits: int) -> TextBrowser:
    return TextBrowser("highest mountain in Taiwan", search, open_page, BrowserLimits(**limits))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Search highest mountain in Taiwan", Command("Search", "highest mountain in Taiwan")),
        ('search: "jade mountain"', Command("Search", "jade mountain")),
        ("Click 2", Command("Click", "2")),
        ("Click 【2†Links】", Command("Click", "2")),
        ("Find in page National Park", Command("Find in page", "National Park")),
        (
            "Quote: It lies in\nYushan National Park.",
            Command("Quote", "It lies in Yushan National Park."),
        ),
        ("Scroll down", Command("Scroll down")),
        ("scroll up.", Command("Scroll up")),
        ("Top", Command("Top")),
        ("Back\nSearch more", Command("Back")),
        ("End: Answer", Command("End")),
        ("Open the page please", Command("Invalid", "Open the page please")),
        ("Click two", Command("Invalid", "Click two")),
    ],
)
def test_parse_command(text, expected):
    assert parse_command(text) == expected


def test_search_click_quote_and_end():
    b = browser()
    assert do(b, Command("Search", "q")) == "3 results for 'q'"
    assert "【0†Yushan】 (example.org)" in b.render(10)
    assert (do(b, Command("Click", "0"))).startswith("opened Yushan (example.org)")
    saved = do(b, Command("Quote", "yushan, ALSO called   jade mountain"))
    assert saved == "saved quote [1]"
    assert b.quotes[0].text == "Yushan, also called Jade Mountain"  # as the page writes it
    assert b.quotes[0].url == "https://example.org/yushan"
    assert do(b, Command("End")) == "browsing done with 1 quotes"
    assert b.ended


def test_a_quote_must_be_on_the_current_page_and_not_the_results():
    b = browser()
    do(b, Command("Search", "q"))
    with pytest.raises(BrowserError, match="not from the search results"):
        do(b, Command("Quote", "Yushan is the highest"))
    do(b, Command("Click", "0"))
    with pytest.raises(BrowserError, match="not on this page"):
        do(b, Command("Quote", "Yushan is the lowest mountain"))
    assert b.quotes == []


def test_a_long_quote_by_its_start_and_end():
    b = browser()
    do(b, Command("Search", "q"))
    do(b, Command("Click", "0"))
    do(b, Command("Quote", "Yushan, also called … National Park."))
    assert b.quotes[0].text.startswith("Yushan, also called Jade Mountain")
    assert b.quotes[0].text.endswith("It lies in Yushan National Park.")


def test_overlapping_quotes_merge_and_limits_hold():
    b = browser(max_quotes=2, max_quote_chars=90)
    do(b, Command("Search", "q"))
    do(b, Command("Click", "0"))
    do(b, Command("Quote", "Yushan, also called Jade Mountain"))
    assert do(b, Command("Quote", "Jade Mountain, is the highest")) == "merged into quote [1]"
    assert b.quotes[0].text == "Yushan, also called Jade Mountain, is the highest"
    with pytest.raises(BrowserError, match="too long"):
        do(b, Command("Quote", "Filler line 0. … Filler line 9."))
    do(b, Command("Quote", "Filler line 3."))
    with pytest.raises(BrowserError, match="quote limit reached"):
        do(b, Command("Quote", "Filler line 4."))


def test_links_are_followed_and_link_markup_is_ignored_when_quoting():
    b = browser()
    do(b, Command("Search", "q"))
    do(b, Command("Click", "1"))
    assert b.page is not None and b.page.title == "Links"
    do(b, Command("Quote", "See the mountain page for more."))
    assert b.quotes[0].text == "See the mountain page for more."
    do(b, Command("Click", "0"))
    assert b.page is not None and b.page.url == "https://example.org/yushan"
    assert (do(b, Command("Back"))) == "back at Links"


def test_scrolling_find_top_and_back():
    b = browser(window_lines=5)
    with pytest.raises(BrowserError, match="Search first"):
        do(b, Command("Scroll down"))
    do(b, Command("Search", "q"))
    do(b, Command("Click", "0"))
    with pytest.raises(BrowserError, match="already at the top"):
        do(b, Command("Scroll up"))
    assert do(b, Command("Scroll down")) == "at line 6"
    assert "Filler line 3." in b.render(3)
    assert do(b, Command("Find in page", "filler LINE 20")) == "found 'filler LINE 20' at line 23"
    assert "lines 23-27 of 32" in b.render(3)
    with pytest.raises(BrowserError, match="not on this page"):
        do(b, Command("Find in page", "volcano"))
    assert do(b, Command("Top")) == "at the top of the page"
    assert "lines 1-5" in b.render(3)
    assert do(b, Command("Back")) == "back at Search results for: q"
    with pytest.raises(BrowserError, match="no page to go back to"):
        do(b, Command("Back"))


def test_page_budget_bad_links_and_answering_without_quotes():
    b = browser(max_pages=1)
    do(b, Command("Search", "q"))
    with pytest.raises(BrowserError, match="no link 9"):
        do(b, Command("Click", "9"))
    with pytest.raises(BrowserError, match="404"):
        do(b, Command("Click", "2"))
    with pytest.raises(BrowserError, match="page limit reached"):
        do(b, Command("Click", "0"))
    with pytest.raises(BrowserError, match="quote at least one"):
        do(b, Command("End"))
    with pytest.raises(BrowserError, match="not a command"):
        do(b, Command("Invalid", "fly away"))


def test_render_shows_question_quotes_window_and_actions_left():
    b = browser()
    text = b.render(7)
    assert text.splitlines()[0] == "Question: highest mountain in Taiwan"
    assert "(none yet)" in text and "Current page: none" in text
    assert "Actions left: 7." in text and "End: Answer" in text


@pytest.mark.parametrize(
    ("quote", "span"),
    [("b  C", (2, 5)), ("A b … e", (0, 9)), ("zz", None), ("a … zz", None), ("", None)],
)
def test_find_span(quote, span):
    assert find_span("a b\nc d e", quote) == span
