"""Quotes, references and marker checking (pure functions, no model)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent_server.webgpt.citations import (
    MarkerFilter,
    Quote,
    answer_context,
    domain,
    references,
)

QUOTES = [
    Quote(1, "Everest", "https://en.wikipedia.org/wiki/Everest", "Everest is the highest."),
    Quote(2, "Alps", "https://www.britannica.com/alps", "The Alps are in Europe."),
    Quote(3, "Everest", "https://en.wikipedia.org/wiki/Everest", "It is 8,849 m tall."),
]


def test_references_group_quotes_of_one_page_in_order_of_first_quote():
    refs = references(QUOTES)
    assert [str(r) for r in refs] == [
        "[1, 3] Everest (en.wikipedia.org)",
        "[2] Alps (britannica.com)",
    ]


def test_answer_context_lists_each_quote_with_title_and_domain():
    context = answer_context(QUOTES[:2])
    assert context == (
        "[1] Everest (en.wikipedia.org)\nEverest is the highest.\n\n"
        "[2] Alps (britannica.com)\nThe Alps are in Europe."
    )


def check_markers(text: str, valid: list[int]) -> str:
    """`text` with every marker repaired or removed, as `MarkerFilter` streams it whole."""
    markers = MarkerFilter(valid)
    return markers.feed(text) + markers.finish()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.a.org/x", "a.org"),
        ("http://B.example:8080/", "b.example"),
        ("doc://7", "local"),
    ],
)
def test_domain(url, expected):
    assert domain(url) == expected


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("Everest is highest [1].", "Everest is highest [1]."),
        ("Everest is highest [7].", "Everest is highest."),
        ("Tall [1, 3] and cold [2,9].", "Tall [1][3] and cold [2]."),
        ("Tall [^3] indeed", "Tall [3] indeed"),
        ("See [the map] and [1]", "See [the map] and [1]"),
        ("Year [2016] was [0] fine", "Year [2016] was fine"),
        ("unclosed at the end [2", "unclosed at the end"),
        ("arr[", "arr"),
    ],
)
def test_markers_are_kept_repaired_or_removed(written, shown):
    assert check_markers(written, [1, 2, 3]) == shown


@example(pieces=["[", "1", " ", ","])  # "[1 " may still become "[1 , 2]": held back, not shown
@given(st.lists(st.sampled_from(["a", " ", "[", "]", "1", "2", "9", ",", "^", "x."]), max_size=40))
def test_streaming_in_any_chunks_matches_the_whole_and_shows_only_valid_markers(pieces):
    text = "".join(pieces)
    whole = check_markers(text, [1, 2])
    streaming = MarkerFilter([1, 2])
    shown = "".join(streaming.feed(p) for p in pieces) + streaming.finish()
    assert shown == whole
    for marker in re.findall(r"\[\^?(\d{1,3}(?:\s*,\s*\^?\d{1,3})*)\]", shown):
        assert all(int(n) in (1, 2) for n in re.findall(r"\d+", marker))


def test_an_invalid_marker_is_never_shown_even_for_a_moment():
    markers = MarkerFilter([1])
    shown = [markers.feed(p) for p in ["The answer ", "[", "4", "]", " is", " here [", "1]."]]
    shown.append(markers.finish())
    assert all("4" not in s for s in shown)
    assert "".join(shown) == "The answer is here [1]."
    assert markers.removed == ["[4]"]
    assert markers.cited == [1]
