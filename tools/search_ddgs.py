"""The live-web search backend: DuckDuckGo (and a few other engines) through the `ddgs` package.

ddgs's own `DDGS.text` turns every reply that is not a 200 into "No results found.", so a rate
limit cannot be told from an empty page. Here ddgs's engine classes do what they do well, build
the request (`build_payload`) and read the page (`extract_results`, `post_extract_results`),
while the HTTP step is ours, behind a `Transport` seam, and the status code decides: 200 is
parsed, 202/403/429 is `RateLimited` (DuckDuckGo's html endpoint answers 202 when it throttles),
anything else is a `SearchError`. The default transport is ddgs's `HttpClient` (primp with
browser impersonation, which is what keeps DuckDuckGo answering) run in a thread with a time
limit; ddgs's exceptions are wrapped into ours there. Engines are tried in the order given
("duckduckgo,brave"): the next is asked when one fails or finds nothing.

Left out: engines that send requests of their own from inside ddgs (wikipedia, grokipedia,
startpage: those would bypass the transport), time limits, paging, and retries (the Search tool
retries and paces every backend).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlsplit

from ddgs.base import BaseSearchEngine
from ddgs.engines import ENGINES
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException
from ddgs.http_client import HttpClient
from lxml.etree import LxmlError

from tools.base import NoWarmUp
from tools.search import RateLimited, SearchError, SearchResult, SearchTimeout

# Engines whose whole search is one request built by `build_payload`; see "Left out" above.
SUPPORTED_ENGINES = ("duckduckgo", "brave", "mojeek", "yahoo")
SAFESEARCH = ("on", "moderate", "off")
RATE_LIMIT_STATUSES = frozenset({202, 403, 429})
# primp enforces the time limit itself; ours is a backstop a little later, for a hung thread.
BACKSTOP_GRACE_S = 1.0


@dataclass(frozen=True)
class HttpRequest:
    """One search request as an engine built it."""

    method: str  # "GET" or "POST"
    url: str
    payload: Mapping[str, str]
    cookies: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def payload_kind(self) -> Literal["params", "data"]:
        """Query-string parameters for GET, form fields for POST."""
        return "params" if self.method == "GET" else "data"


@dataclass(frozen=True)
class HttpReply:
    status: int
    text: str


# The seam: tests pass a fake; a transport raises `SearchError` (or a subclass) when no reply came.
Transport = Callable[[HttpRequest], Awaitable[HttpReply]]


class ResponseLike(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...


class HttpClientLike(Protocol):
    """What the default transport uses of ddgs's `HttpClient`."""

    def request(self, method: str, url: str, **kwargs: Any) -> ResponseLike: ...


class DdgsTransport:
    """The default transport: ddgs's `HttpClient` (primp, browser impersonation) in a thread."""

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        proxy: str | None = None,  # http, https or socks5 URL, as ddgs takes it
        client_factory: Callable[[], HttpClientLike] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._factory: Callable[[], HttpClientLike] = client_factory or (
            lambda: HttpClient(proxy=proxy, timeout=math.ceil(timeout_s))
        )
        self._client: HttpClientLike | None = None

    async def __call__(self, request: HttpRequest) -> HttpReply:
        if self._client is None:  # built at the first search, so building the app makes none
            self._client = self._factory()
        kwargs: dict[str, Any] = {request.payload_kind: dict(request.payload)}
        kwargs["timeout"] = self.timeout_s
        if request.cookies:
            kwargs["cookies"] = dict(request.cookies)
        if request.headers:
            kwargs["headers"] = dict(request.headers)
        host = urlsplit(request.url).netloc
        call = asyncio.to_thread(self._client.request, request.method, request.url, **kwargs)
        try:
            # A thread cannot be stopped: past the backstop it is left to finish on its own.
            response = await asyncio.wait_for(call, self.timeout_s + BACKSTOP_GRACE_S)
        except (TimeoutError, TimeoutException) as exc:
            raise SearchTimeout(f"{host} did not answer within {self.timeout_s:g} s") from exc
        except RatelimitException as exc:
            raise RateLimited(f"{host} refused the query (rate limit)") from exc
        except DDGSException as exc:
            raise SearchError(f"{host} cannot be reached: {_reason(exc)}") from exc
        return HttpReply(int(response.status_code), str(response.text))


class DdgsBackend(NoWarmUp):
    """Live web results: ddgs's engines build and read the pages, our transport fetches them."""

    # DuckDuckGo throttles clients that send more than about one query a second.
    min_interval_s = 1.0

    def __init__(
        self,
        *,
        engines: str = "duckduckgo",  # comma-separated, tried in this order
        region: str = "us-en",  # country-language; "wt-wt" for no region
        safesearch: str = "moderate",
        timeout_s: float = 5.0,  # per request; the engine's call limit bounds the retries too
        proxy: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        names = [n.strip().lower() for n in engines.split(",") if n.strip()]
        unsupported = [n for n in names if n not in SUPPORTED_ENGINES]
        if not names or unsupported:
            raise ValueError(f"unsupported engines {unsupported}; supported: {SUPPORTED_ENGINES}")
        if safesearch not in SAFESEARCH:
            raise ValueError(f"safesearch must be one of {SAFESEARCH}, not {safesearch!r}")
        if not re.fullmatch(r"[a-z]{2}-[a-z]{2}", region.lower()):
            raise ValueError(f"region must look like 'us-en', not {region!r}")
        self.engines = tuple(names)
        self.region = region.lower()
        self.safesearch = safesearch
        self.transport = transport or DdgsTransport(timeout_s=timeout_s, proxy=proxy)
        self._engines: dict[str, tuple[BaseSearchEngine[Any], _CookieCatcher]] = {}

    @property
    def name(self) -> str:
        return ",".join(self.engines)

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        failures: list[SearchError] = []
        answered = False
        for engine in self.engines:
            try:
                results = await self._search_one(engine, query)
            except SearchError as exc:
                failures.append(exc)
                continue
            if results:
                return results[:max_results]
            answered = True
        if answered or not failures:
            return []
        # A rate limit anywhere is reported as one, so the Search tool backs off and retries.
        limited = [f for f in failures if isinstance(f, RateLimited)]
        raise (limited or failures)[0]

    async def _search_one(self, name: str, query: str) -> list[SearchResult]:
        engine, catcher = self._engine(name)
        # Engines are shared between concurrent searches and some write per-query state (yahoo
        # its URL, brave its cookies); there is no await between writing and reading it here.
        catcher.cookies.clear()
        payload = engine.build_payload(
            query=query, region=self.region, safesearch=self.safesearch, timelimit=None, page=1
        )
        request = HttpRequest(
            method=engine.search_method,
            url=engine.search_url,
            payload={key: str(value) for key, value in payload.items()},
            cookies=dict(catcher.cookies),
            headers=dict(engine.headers_update),
        )
        reply = await self.transport(request)
        if reply.status in RATE_LIMIT_STATUSES:
            raise RateLimited(f"{name} refused the query (HTTP {reply.status}, rate limit)")
        if reply.status != 200:
            raise SearchError(f"{name} answered HTTP {reply.status}")
        try:
            # Parsed here, not in a thread: lxml's parser on the engine is not thread-safe, and a
            # results page takes a few milliseconds.
            items = engine.post_extract_results(engine.extract_results(reply.text))
        except (LxmlError, ValueError):  # an empty or broken page holds no results
            return []
        return [SearchResult(r.title, r.href, r.body) for r in items if r.href]

    def _engine(self, name: str) -> tuple[BaseSearchEngine[Any], _CookieCatcher]:
        if name not in self._engines:
            cls = ENGINES["text"][name]
            # Not `cls()`: its __init__ builds a primp client that our transport would bypass.
            # The engine gets a stand-in instead, which catches the cookies it sets.
            engine = cls.__new__(cls)
            catcher = _CookieCatcher()
            engine.http_client = cast(HttpClient, catcher)
            self._engines[name] = (engine, catcher)
        return self._engines[name]


class _CookieCatcher:
    """Stands in for an engine's HTTP client: `build_payload` sets cookies on `client`."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    @property
    def client(self) -> _CookieCatcher:
        return self

    def set_cookies(self, url: str, cookies: Mapping[str, str] | None) -> None:
        del url  # one engine, one site: the request's URL is where they go
        self.cookies.update(cookies or {})


def _reason(exc: Exception) -> str:
    """Why a request got no reply, in a few words the model can read (not the HTTP stack's
    debug text, whose numbers a small model would take for an answer)."""
    text = str(exc).lower()
    if "dns" in text or "resolv" in text:
        return "its name does not resolve (no network?)"
    if "connect" in text or "refused" in text or "unreachable" in text:
        return "the connection failed (no network?)"
    if "certificate" in text or "tls" in text or "ssl" in text:
        return "the secure connection failed"
    return type(exc).__name__
