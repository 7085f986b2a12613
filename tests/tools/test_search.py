"""Tests for the Search tool's policies: arguments, output, cache, single flight, pacing, retries.

The backend is an in-test fake that counts its calls and can be told to fail; time is a fake
clock that only moves when the tool sleeps, so every delay is exact and nothing waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from fakes import FakeTime

from tools.base import MAX_RESULT_CHARS, NoWarmUp, Tool, ToolError
from tools.search import (
    RateLimited,
    Search,
    SearchError,
    SearchResult,
    SearchTimeout,
    clean_query,
    format_results,
)

T = TypeVar("T")

YUSHAN = SearchResult(
    "Yushan - Wikipedia",
    "https://en.wikipedia.org/wiki/Yushan_(mountain)",
    "Yushan is the highest mountain in Taiwan, at 3,952 m.",
)


class FakeBackend(NoWarmUp):
    """Answers from `results`, or with the next scripted outcome in `script` while there is one."""

    name = "fake"
    min_interval_s = 0.0

    def __init__(
        self, results: list[SearchResult] | None = None, fake_time: FakeTime | None = None
    ) -> None:
        self.results = [YUSHAN] if results is None else results
        self.script: list[Exception | list[SearchResult]] = []
        self.calls: list[tuple[str, int]] = []
        self.started_at: list[float] = []
        self.fake_time = fake_time
        self.gate: asyncio.Event | None = None  # when set, each search waits for it

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        self.calls.append((query, max_results))
        if self.fake_time is not None:
            self.started_at.append(self.fake_time.now)
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            outcome = self.script.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return self.results


def make(backend: FakeBackend, fake_time: FakeTime, **kwargs: Any) -> Search:
    return Search(backend, clock=fake_time.clock, sleep=fake_time.sleep, **kwargs)


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def refusal(search: Search, argument: str) -> str:
    with pytest.raises(ToolError) as caught:
        run(search(argument))
    return str(caught.value)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


# -- the tool's face -------------------------------------------------------------------------------


def test_it_is_a_tool_and_its_example_works(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    search = make(backend, fake_time)
    assert isinstance(search, Tool)
    assert search.name == "Search"
    assert "\n" not in search.description
    assert run(search(search.example)).startswith("1. Yushan - Wikipedia — ")
    assert backend.calls == [("tallest mountain in Taiwan", 3)]


@pytest.mark.parametrize(
    "argument",
    [
        "tallest mountain in Taiwan",  # the grammar already unquoted a string literal
        '"tallest mountain in Taiwan"',
        "'tallest mountain in Taiwan'",
        "“tallest mountain in Taiwan”",
        "  tallest   mountain\nin Taiwan  ",
    ],
)
def test_the_query_arrives_bare_however_it_was_written(argument: str) -> None:
    assert clean_query(argument) == "tallest mountain in Taiwan"


def test_quotes_inside_the_query_are_kept() -> None:
    assert clean_query("'don't panic'") == "don't panic"
    assert clean_query('"exact phrase" search') == '"exact phrase" search'


@pytest.mark.parametrize("argument", ["", "   ", '""', "' '"])
def test_an_empty_query_is_refused_without_a_search(argument: str, fake_time: FakeTime) -> None:
    backend = FakeBackend()
    assert refusal(make(backend, fake_time), argument).startswith("empty query")
    assert backend.calls == []


def test_a_too_long_query_is_refused_in_one_line(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    message = refusal(make(backend, fake_time), "word " * 100)
    assert message == "query too long (499 characters, limit 300)"
    assert backend.calls == []


def test_results_are_one_compact_line_each(fake_time: FakeTime) -> None:
    results = [
        YUSHAN,
        SearchResult("Xueshan", "https://example.org/xueshan", ""),
        SearchResult("", "https://example.org/untitled", "A page without a title."),
    ]
    text = run(make(FakeBackend(results), fake_time)("Taiwan mountains"))
    assert text.splitlines() == [
        "1. Yushan - Wikipedia — Yushan is the highest mountain in Taiwan, at 3,952 m. "
        "(https://en.wikipedia.org/wiki/Yushan_(mountain))",
        "2. Xueshan (https://example.org/xueshan)",
        "3. https://example.org/untitled — A page without a title.",
    ]


def test_only_max_results_are_shown_even_if_the_backend_sends_more(fake_time: FakeTime) -> None:
    results = [SearchResult(f"T{i}", f"https://e.org/{i}", "s") for i in range(6)]
    backend = FakeBackend(results)
    text = run(make(backend, fake_time, max_results=2)("q"))
    assert len(text.splitlines()) == 2
    assert backend.calls == [("q", 2)]


def test_long_snippets_are_trimmed_so_every_result_fits() -> None:
    results = [
        SearchResult(f"Title {i}", f"https://example.org/{i}", ("word " * 400).strip())
        for i in range(3)
    ] + [SearchResult("Short", "https://example.org/short", "A short snippet stays whole.")]
    text = format_results(results)
    lines = text.splitlines()
    assert len(text) <= MAX_RESULT_CHARS
    assert "output cut" not in text
    assert [line.split(" ")[0] for line in lines] == ["1.", "2.", "3.", "4."]
    assert all(line.endswith(f"({r.url})") for line, r in zip(lines, results, strict=True))
    assert lines[3] == "4. Short — A short snippet stays whole. (https://example.org/short)"
    assert all("word…" in line for line in lines[:3])
    # The room left by the short snippet goes to the long ones: the page is nearly full.
    assert len(text) > MAX_RESULT_CHARS - 20


def test_no_results_is_a_refusal_and_is_not_cached(fake_time: FakeTime) -> None:
    backend = FakeBackend([])
    search = make(backend, fake_time)
    assert refusal(search, "qwzxv") == 'no results for "qwzxv"'
    backend.results = [YUSHAN]
    assert run(search("qwzxv")).startswith("1. Yushan")
    assert len(backend.calls) == 2


# -- cache -----------------------------------------------------------------------------------------


def test_a_repeated_query_is_served_from_the_cache(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    search = make(backend, fake_time)
    first = run(search('"Tallest  mountain in Taiwan"'))
    second = run(search("tallest mountain in taiwan"))
    assert first == second
    assert backend.calls == [("Tallest mountain in Taiwan", 3)]


def test_cache_entries_expire_after_the_ttl(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    search = make(backend, fake_time, cache_ttl_s=60)
    run(search("q"))
    fake_time.now += 59
    run(search("q"))
    assert len(backend.calls) == 1
    fake_time.now += 1
    run(search("q"))
    assert len(backend.calls) == 2


def test_the_cache_drops_the_least_recently_used_entry(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    search = make(backend, fake_time, cache_size=2)
    for query in ["a", "b", "a", "c"]:  # "a" was used after "b", so "b" goes when "c" comes
        run(search(query))
    assert [q for q, _ in backend.calls] == ["a", "b", "c"]
    run(search("a"))
    run(search("b"))
    assert [q for q, _ in backend.calls] == ["a", "b", "c", "b"]


def test_errors_are_not_cached(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    backend.script = [SearchError("fake answered HTTP 500")]
    search = make(backend, fake_time)
    assert refusal(search, "q") == "fake answered HTTP 500"
    assert run(search("q")).startswith("1. Yushan")
    assert len(backend.calls) == 2


# -- single flight ---------------------------------------------------------------------------------


def test_concurrent_identical_queries_share_one_backend_request(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    search = make(backend, fake_time)

    async def main() -> list[str]:
        backend.gate = asyncio.Event()
        calls = [asyncio.create_task(search(q)) for q in ["q", " q ", '"Q"', "other"]]
        await asyncio.sleep(0.01)
        backend.gate.set()
        return list(await asyncio.gather(*calls))

    texts = run(main())
    assert len(set(texts)) == 1
    assert sorted(q for q, _ in backend.calls) == ["other", "q"]


def test_a_shared_failure_reaches_every_waiter_and_is_not_kept(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    backend.script = [SearchError("fake is down")]
    search = make(backend, fake_time)

    async def main() -> list[BaseException | str]:
        backend.gate = asyncio.Event()
        calls = [asyncio.create_task(search("q")) for _ in range(3)]
        await asyncio.sleep(0.01)
        backend.gate.set()
        return list(await asyncio.gather(*calls, return_exceptions=True))

    outcomes = run(main())
    assert [str(o) for o in outcomes] == ["fake is down"] * 3
    assert len(backend.calls) == 1
    assert run(search("q")).startswith("1. Yushan")


def test_a_caller_giving_up_does_not_cancel_the_request_for_others(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    search = make(backend, fake_time)

    async def main() -> tuple[bool, str]:
        backend.gate = asyncio.Event()
        first = asyncio.create_task(search("q"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(search("q"))
        await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.sleep(0.01)
        backend.gate.set()
        text = await second
        return first.cancelled(), text

    cancelled, text = run(main())
    assert cancelled
    assert text.startswith("1. Yushan")
    assert len(backend.calls) == 1


# -- pacing ----------------------------------------------------------------------------------------


def test_backend_requests_are_spaced_by_the_minimum_interval(fake_time: FakeTime) -> None:
    backend = FakeBackend(fake_time=fake_time)
    search = make(backend, fake_time, min_interval_s=1.0)
    for query in ["a", "b", "c"]:
        run(search(query))
    run(search("a"))  # cached: no request, no wait
    assert backend.started_at == [0.0, 1.0, 2.0]
    assert fake_time.delays == [1.0, 1.0]


def test_concurrent_requests_queue_for_their_turn(fake_time: FakeTime) -> None:
    backend = FakeBackend(fake_time=fake_time)
    search = make(backend, fake_time, min_interval_s=1.0)

    async def main() -> None:
        await asyncio.gather(*(search(q) for q in ["a", "b", "c"]))

    run(main())
    assert sorted(backend.started_at) == [0.0, 1.0, 2.0]


def test_the_interval_comes_from_the_backend_unless_given(fake_time: FakeTime) -> None:
    backend = FakeBackend(fake_time=fake_time)
    assert make(backend, fake_time).min_interval_s == 0.0

    class PacedBackend(FakeBackend):
        min_interval_s = 0.5

    assert make(PacedBackend(), fake_time).min_interval_s == 0.5
    assert make(backend, fake_time, min_interval_s=2.0).min_interval_s == 2.0


def test_waiting_for_the_interval_does_not_block_the_event_loop() -> None:
    backend = FakeBackend()
    search = Search(backend, min_interval_s=0.2)  # the real clock and asyncio.sleep
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> float:
        tick_task = asyncio.create_task(ticker())
        await search("a")
        started = time.monotonic()
        await search("b")
        tick_task.cancel()
        return time.monotonic() - started

    waited = run(main())
    assert waited >= 0.15
    assert ticks >= 5


# -- retries ---------------------------------------------------------------------------------------


def test_rate_limits_are_retried_with_exponential_back_off(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    backend.script = [RateLimited("slow down"), RateLimited("slow down")]
    text = run(make(backend, fake_time, retries=2, backoff_s=1.0)("q"))
    assert text.startswith("1. Yushan")
    assert fake_time.delays == [1.0, 2.0]
    assert len(backend.calls) == 3


@pytest.mark.parametrize("timeout", [SearchTimeout("fake did not answer"), TimeoutError()])
def test_timeouts_are_retried(timeout: Exception, fake_time: FakeTime) -> None:
    backend = FakeBackend()
    backend.script = [timeout]
    assert run(make(backend, fake_time)("q")).startswith("1. Yushan")
    assert fake_time.delays == [1.0]


def test_a_lasting_rate_limit_ends_in_one_clear_line(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    backend.script = [RateLimited("HTTP 202")] * 5
    search = make(backend, fake_time, retries=2, backoff_s=0.5)
    with pytest.raises(RateLimited) as caught:
        run(search("q"))
    assert str(caught.value) == "Search is rate-limited by fake; try again in a minute"
    assert fake_time.delays == [0.5, 1.0]
    assert len(backend.calls) == 3


def test_a_lasting_timeout_says_how_often_it_tried(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    backend.script = [SearchTimeout("no answer")] * 2
    with pytest.raises(SearchTimeout, match=r"^fake did not answer in time \(2 tries\)$"):
        run(make(backend, fake_time, retries=1)("q"))


def test_other_failures_are_not_retried(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    backend.script = [SearchError("fake answered HTTP 500")]
    assert refusal(make(backend, fake_time), "q") == "fake answered HTTP 500"
    assert len(backend.calls) == 1
    assert fake_time.delays == []


def test_a_bug_in_a_backend_is_not_turned_into_a_tool_error(fake_time: FakeTime) -> None:
    backend = FakeBackend()
    backend.script = [KeyError("oops")]
    search = make(backend, fake_time)
    with pytest.raises(KeyError):
        run(search("q"))
    assert run(search("q")).startswith("1. Yushan")  # and it was not cached


def test_retries_wait_for_the_interval_too(fake_time: FakeTime) -> None:
    backend = FakeBackend(fake_time=fake_time)
    backend.script = [RateLimited("slow down")]
    run(make(backend, fake_time, min_interval_s=3.0, backoff_s=1.0)("q"))
    # One second of back-off, then two more to complete the three-second interval.
    assert fake_time.delays == [1.0, 2.0]
    assert backend.started_at == [0.0, 3.0]
