"""The Search tool: `[Search("tallest mountain in Taiwan")]` → the top results as compact text.

A search backend is anything with an async `search(query, max_results)`; the `Search` tool in
front of it adds what every backend needs, since these are what users of search tools report
most: a TTL cache (LRU-bounded, never holding errors or empty results), single flight for
identical queries in progress, a minimum interval between backend requests (a backend may ask
for one with a `min_interval_s` attribute), and retries with exponential back-off when the
backend is rate-limited or times out, ending in one clear line when it still refuses.

    ToolError
      └── SearchError       (the backend failed; one line saying why)
            ├── RateLimited     (too many queries: retried with back-off)
            └── SearchTimeout   (no answer in time: retried with back-off)

Left out: fetching the result pages (that is browsing), operators such as `site:`, paging, and
sharing the cache between tool instances or processes.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tools.base import MAX_RESULT_CHARS, NoWarmUp, ToolError, cap_output

# Quotes a model may wrap the query in when the call grammar has not already removed them
# (`Search('don't panic')` is not one string literal, so it arrives with its quotes).
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»"}


@dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    snippet: str


class SearchBackend(Protocol):
    """Where results come from: the live web (`ddgs`) or a local corpus (`local`)."""

    @property
    def name(self) -> str: ...

    @property
    def min_interval_s(self) -> float:
        """Seconds to leave between queries (politeness to a live engine; 0 for a local one)."""
        ...

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        """The best results first; an empty list when nothing matched."""
        ...

    def start(self) -> None:
        """Begin warming up (a local index) in the background; `NoWarmUp` when there is none."""
        ...

    def prepare(self) -> object:
        """Finish warming up now, raising what it raised."""
        ...


class SearchError(ToolError):
    """The backend failed; the message says why in one line."""


class RateLimited(SearchError):
    """The backend refused the query because too many were sent."""


class SearchTimeout(SearchError):
    """The backend did not answer in time."""


class Search(NoWarmUp):
    """Web or corpus search with caching, single flight, pacing and retries around a backend."""

    name = "Search"
    description = "Searches the web and returns the top results with title, snippet and link."
    example = '"tallest mountain in Taiwan"'
    parameters = None  # a free-text argument

    def __init__(
        self,
        backend: SearchBackend,
        *,
        max_results: int = 3,  # a small model reads three results well; more crowd its context
        cache_ttl_s: float = 3600.0,  # results change slowly; a repeated query costs nothing
        cache_size: int = 256,  # entries, least recently used dropped first
        min_interval_s: float | None = None,  # None: the backend's `min_interval_s`, else 0
        retries: int = 2,  # after the first try, on rate limits and timeouts only
        backoff_s: float = 1.0,  # first retry's delay; doubled for each further one
        max_query_chars: int = 300,  # a query is a few words; longer is a pasted paragraph
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.backend = backend
        self.max_results = max_results
        self.cache_ttl_s = cache_ttl_s
        self.cache_size = cache_size
        if min_interval_s is None:
            min_interval_s = backend.min_interval_s
        self.min_interval_s = min_interval_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_query_chars = max_query_chars
        self._clock = clock
        self._sleep = sleep
        self._cache: OrderedDict[tuple[str, int], tuple[float, list[SearchResult]]] = OrderedDict()
        self._inflight: dict[tuple[str, int], asyncio.Task[list[SearchResult]]] = {}
        self._pace_lock = asyncio.Lock()
        self._last_request = -float("inf")

    def start(self) -> None:
        """Begin the backend's warm-up (a local index), if it has one."""
        self.backend.start()

    def prepare(self) -> None:
        """Finish the backend's warm-up now, if it has one."""
        self.backend.prepare()

    async def __call__(self, argument: str) -> str:
        return format_results(await self.results(argument))

    async def results(self, argument: str) -> list[SearchResult]:
        """The top results for the query in `argument`; `ToolError` when there are none."""
        query = clean_query(argument, self.max_query_chars)
        key = (query.casefold(), self.max_results)
        results = self._cached(key)
        if results is None:
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.create_task(self._fetch(query, key))
                self._inflight[key] = task
                task.add_done_callback(lambda done: self._forget(key, done))
            # Shielded: a caller that gives up (the engine's time limit) must not cancel the
            # request the other callers of the same query are waiting for.
            results = await asyncio.shield(task)
        if not results:
            raise ToolError(f'no results for "{query}"')
        return results[: self.max_results]

    def _cached(self, key: tuple[str, int]) -> list[SearchResult] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, results = entry
        if self._clock() >= expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return results

    def _store(self, key: tuple[str, int], results: list[SearchResult]) -> None:
        if not results or self.cache_ttl_s <= 0 or self.cache_size <= 0:
            return  # an empty answer may be a backend's bad moment: ask again next time
        self._cache[key] = (self._clock() + self.cache_ttl_s, results)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _forget(self, key: tuple[str, int], task: asyncio.Task[list[SearchResult]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaited is not logged as lost

    async def _fetch(self, query: str, key: tuple[str, int]) -> list[SearchResult]:
        for attempt in range(self.retries + 1):
            await self._pace()
            try:
                results = await self.backend.search(query, self.max_results)
            except (RateLimited, SearchTimeout, TimeoutError) as exc:
                if attempt == self.retries:
                    raise self._gave_up(exc) from exc
                await self._sleep(self.backoff_s * 2**attempt)
            else:
                self._store(key, results)
                return results
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _pace(self) -> None:
        # Only the start of each request is serialised, so slow requests may still overlap;
        # the lock makes concurrent callers queue for their turn instead of all waking at once.
        async with self._pace_lock:
            wait = self._last_request + self.min_interval_s - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._last_request = self._clock()

    def _gave_up(self, exc: Exception) -> SearchError:
        tries = self.retries + 1
        if isinstance(exc, RateLimited):
            return RateLimited(
                f"Search is rate-limited by {self.backend.name}; try again in a minute"
            )
        return SearchTimeout(f"{self.backend.name} did not answer in time ({tries} tries)")


def clean_query(argument: str, max_chars: int = 300) -> str:
    """The query in `argument`, without surrounding quotes or runs of spaces; `ToolError` if bad."""
    text = argument.strip()
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1]
    query = " ".join(text.split())
    if not query:
        raise ToolError('empty query: write the words to search for, e.g. Search("...")')
    if len(query) > max_chars:
        raise ToolError(f"query too long ({len(query)} characters, limit {max_chars})")
    return query


def format_results(results: list[SearchResult], limit: int = MAX_RESULT_CHARS) -> str:
    """One line per result, `1. Title — snippet (url)`, snippets trimmed so every line fits."""
    heads = [f"{i}. {r.title or r.url}" for i, r in enumerate(results, start=1)]
    tails = [f" ({r.url})" if r.url and r.title else "" for r in results]
    snippets = [" ".join(r.snippet.split()) for r in results]
    separators = [" — " if s else "" for s in snippets]
    fixed = sum(map(len, heads + tails + separators)) + len(results) - 1  # + the newlines
    budgets = _share(limit - fixed, [len(s) for s in snippets])
    lines = []
    for head, snippet, tail, budget in zip(heads, snippets, tails, budgets, strict=True):
        shown = _trim(snippet, budget)
        lines.append(f"{head} — {shown}{tail}" if shown else head + tail)
    # A pathological title or URL can still overflow; the cap then cuts the last lines.
    return cap_output("\n".join(lines), limit)


def _share(room: int, wants: list[int]) -> list[int]:
    """Split `room` characters fairly: short snippets keep all theirs, long ones share the rest."""
    budgets = [0] * len(wants)
    left = max(room, 0)
    order = sorted(range(len(wants)), key=lambda i: wants[i])
    for rank, i in enumerate(order):
        budgets[i] = min(wants[i], left // (len(wants) - rank))
        left -= budgets[i]
    return budgets


def _trim(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    if budget < 8:  # too little room for words: drop the snippet rather than show a stub
        return ""
    cut = text[: budget - 1]
    space = cut.rfind(" ")
    if space > budget // 2:  # end on a word when that loses little
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"
