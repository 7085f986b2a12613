"""Tests for the ddgs backend, offline: HTTP-level fakes at the transport seam, and a fake
ddgs `HttpClient` under the default transport. Also the Search tool and this backend together.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException
from ddgs.http_client import HttpClient
from fakes import FakeTime

from tools.search import RateLimited, Search, SearchError, SearchResult, SearchTimeout
from tools.search_ddgs import (
    SUPPORTED_ENGINES,
    DdgsBackend,
    DdgsTransport,
    HttpReply,
    HttpRequest,
)

T = TypeVar("T")

DDG_URL = "https://html.duckduckgo.com/html/"
BRAVE_URL = "https://search.brave.com/search"


def ddg_result(href: str, title: str, snippet: str, extra_class: str = "") -> str:
    return f"""
    <div class="result results_links results_links_deep web-result {extra_class}">
      <div class="links_main links_deep result__body">
        <h2 class="result__title">
          <a rel="nofollow" class="result__a" href="{href}">{title}</a>
        </h2>
        <div class="result__extras">
          <div class="result__extras__url">
            <span class="result__icon">
              <a rel="nofollow" href="{href}"><img class="result__icon__img" src="x.ico"></a>
            </span>
            <a class="result__url" href="{href}">{href.split("//")[-1]}</a>
          </div>
        </div>
        <a class="result__snippet" href="{href}">{snippet}</a>
        <div class="clear"></div>
      </div>
    </div>"""


# A DuckDuckGo html results page as the endpoint serves it, cut down: an ad first, then results.
DDG_PAGE = f"""<!DOCTYPE html>
<html lang="en-US">
<head><meta charset="UTF-8"><title>tallest mountain in Taiwan at DuckDuckGo</title></head>
<body>
  <div id="links" class="results">
    {
    ddg_result(
        "https://duckduckgo.com/y.js?ad_domain=travel.example&amp;ad_provider=bingv7aa&amp;u3=x",
        "Cheap Flights to Taiwan",
        "Book now and <b>save</b>.",
        "result--ad",
    )
}
    {
    ddg_result(
        "https://en.wikipedia.org/wiki/Yushan_(mountain)",
        "Yushan (mountain) - Wikipedia",
        "<b>Yushan</b> is the highest mountain in <b>Taiwan</b> at 3,952&nbsp;m (12,966 ft).",
    )
}
    {
    ddg_result(
        "https://www.britannica.com/place/Yu-Mountain",
        "Yu Mountain | Taiwan, Map, &amp; Facts | Britannica",
        "Yu Mountain, the highest peak of Taiwan &amp; East Asia&#x27;s islands.",
    )
}
    {
    ddg_result(
        "https://www.taiwan.net.tw/m1.aspx?sNo=0002019",
        "Yushan National Park - Taiwan Tourism",
        "Home to Northeast Asia's highest peak.",
    )
}
  </div>
  <div class="nav-link">
    <form action="/html/" method="post"><input type="submit" value="Next"></form>
  </div>
</body>
</html>"""

# What DuckDuckGo's html endpoint sends, with HTTP 202, when it decides a client is a bot.
DDG_ANOMALY_PAGE = """<!DOCTYPE html><html><body>
<div class="anomaly-modal__title">Unfortunately, bots use DuckDuckGo too.</div>
<div class="anomaly-modal__description">Please complete the following challenge.</div>
</body></html>"""

BRAVE_PAGE = """<html><body><div id="results">
  <div class="snippet" data-type="web">
    <a href="https://brave.example/yushan">
      <div class="title search-snippet-title">Yushan at Brave</div>
    </a>
    <div class="snippet-content"><div class="content">Found by the second engine.</div></div>
  </div>
</div></body></html>"""


class FakeTransport:
    """Replies from a script, in order, and records every request."""

    def __init__(self, *replies: HttpReply | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpReply:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def ok(text: str) -> HttpReply:
    return HttpReply(200, text)


# -- the backend against HTTP-level fakes ----------------------------------------------------------


def test_a_results_page_is_read_and_the_ad_dropped() -> None:
    backend = DdgsBackend(transport=FakeTransport(ok(DDG_PAGE)))
    results = run(backend.search("tallest mountain in Taiwan", 5))
    assert results == [
        SearchResult(
            "Yushan (mountain) - Wikipedia",
            "https://en.wikipedia.org/wiki/Yushan_(mountain)",
            "Yushan is the highest mountain in Taiwan at 3,952 m (12,966 ft).",
        ),
        SearchResult(
            "Yu Mountain | Taiwan, Map, & Facts | Britannica",
            "https://www.britannica.com/place/Yu-Mountain",
            "Yu Mountain, the highest peak of Taiwan & East Asia's islands.",
        ),
        SearchResult(
            "Yushan National Park - Taiwan Tourism",
            "https://www.taiwan.net.tw/m1.aspx?sNo=0002019",
            "Home to Northeast Asia's highest peak.",
        ),
    ]


def test_max_results_cuts_the_list() -> None:
    backend = DdgsBackend(transport=FakeTransport(ok(DDG_PAGE)))
    results = run(backend.search("q", 2))
    assert [r.url.split("/")[2] for r in results] == ["en.wikipedia.org", "www.britannica.com"]


def test_the_request_carries_the_query_and_region() -> None:
    transport = FakeTransport(ok(DDG_PAGE))
    run(DdgsBackend(region="DE-de", transport=transport).search("höchster Berg Taiwans", 3))
    [request] = transport.requests
    assert (request.method, request.url, request.payload_kind) == ("POST", DDG_URL, "data")
    assert dict(request.payload) == {"q": "höchster Berg Taiwans", "b": "", "l": "de-de"}


@pytest.mark.parametrize("status", [202, 403, 429])
def test_refusals_are_rate_limits(status: int) -> None:
    backend = DdgsBackend(transport=FakeTransport(HttpReply(status, DDG_ANOMALY_PAGE)))
    with pytest.raises(RateLimited, match=rf"^duckduckgo refused the query \(HTTP {status}"):
        run(backend.search("q", 3))


def test_a_server_error_is_a_search_error_naming_the_status() -> None:
    backend = DdgsBackend(transport=FakeTransport(HttpReply(500, "oops")))
    with pytest.raises(SearchError) as caught:
        run(backend.search("q", 3))
    assert not isinstance(caught.value, RateLimited)
    assert str(caught.value) == "duckduckgo answered HTTP 500"


def test_a_transport_timeout_passes_through() -> None:
    backend = DdgsBackend(transport=FakeTransport(SearchTimeout("slow")))
    with pytest.raises(SearchTimeout, match="^slow$"):
        run(backend.search("q", 3))


@pytest.mark.parametrize(
    "page",
    ["", "   ", "<html><body>garbage &&& <div", '{"not": "html"}', DDG_ANOMALY_PAGE, "\x00\x01"],
)
def test_a_garbled_page_has_no_results(page: str) -> None:
    assert run(DdgsBackend(transport=FakeTransport(ok(page))).search("q", 3)) == []


def test_engines_fall_back_in_order_and_carry_their_cookies() -> None:
    transport = FakeTransport(HttpReply(202, DDG_ANOMALY_PAGE), ok(BRAVE_PAGE))
    backend = DdgsBackend(engines="duckduckgo, brave", safesearch="off", transport=transport)
    assert backend.name == "duckduckgo,brave"
    results = run(backend.search("yushan", 3))
    assert results == [
        SearchResult(
            "Yushan at Brave", "https://brave.example/yushan", "Found by the second engine."
        )
    ]
    assert [r.url for r in transport.requests] == [DDG_URL, BRAVE_URL]
    brave = transport.requests[1]
    assert (brave.method, brave.payload_kind) == ("GET", "params")
    assert brave.payload["q"] == "yushan"
    assert dict(brave.cookies) == {"us": "us", "useLocation": "0", "safesearch": "off"}


def test_an_empty_page_also_falls_back() -> None:
    transport = FakeTransport(ok("<html><body></body></html>"), ok(BRAVE_PAGE))
    backend = DdgsBackend(engines="duckduckgo,brave", transport=transport)
    assert [r.title for r in run(backend.search("q", 3))] == ["Yushan at Brave"]


def test_a_rate_limit_anywhere_is_reported_when_every_engine_fails() -> None:
    transport = FakeTransport(HttpReply(500, ""), HttpReply(429, ""))
    backend = DdgsBackend(engines="duckduckgo,brave", transport=transport)
    with pytest.raises(RateLimited, match="^brave refused"):
        run(backend.search("q", 3))


def test_an_engine_that_answered_empty_wins_over_one_that_failed() -> None:
    transport = FakeTransport(HttpReply(500, ""), ok("<html></html>"))
    backend = DdgsBackend(engines="duckduckgo,brave", transport=transport)
    assert run(backend.search("q", 3)) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"engines": "duckduckgo,wikipedia"}, "unsupported engines ['wikipedia']"),
        ({"engines": " , "}, "unsupported engines []"),
        ({"safesearch": "strict"}, "safesearch must be one of"),
        ({"region": "english"}, "region must look like 'us-en'"),
    ],
)
def test_bad_settings_are_refused_when_built(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DdgsBackend(**settings)  # type: ignore[arg-type]


def test_every_supported_engine_builds_a_request_without_sending_its_own() -> None:
    for name in SUPPORTED_ENGINES:
        transport = FakeTransport(ok("<html></html>"))
        assert run(DdgsBackend(engines=name, transport=transport).search("q", 3)) == []
        [request] = transport.requests
        assert request.url.startswith("https://")
        assert "q" in request.payload.values()


# -- the default transport, with a fake ddgs HttpClient under it -----------------------------------


class FakeResponse:
    def __init__(self, status_code: int, text: str) -> None:
        self.status_code = status_code
        self.text = text


class FakeHttpClient:
    """Stands where ddgs's `HttpClient` stands: `request(method, url, **kwargs)`."""

    def __init__(self, *outcomes: FakeResponse | Exception) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.threads: list[str] = []

    def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        self.requests.append((method, url, kwargs))
        self.threads.append(threading.current_thread().name)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_the_default_transport_is_ddgs_http_client_built_at_first_use() -> None:
    backend = DdgsBackend(timeout_s=7.0)
    assert isinstance(backend.transport, DdgsTransport)
    assert backend.transport.timeout_s == 7.0
    built: list[FakeHttpClient] = []
    client = FakeHttpClient(FakeResponse(200, DDG_PAGE), FakeResponse(202, DDG_ANOMALY_PAGE))

    def factory() -> FakeHttpClient:
        built.append(client)
        return client

    transport = DdgsTransport(timeout_s=3.0, client_factory=factory)
    backend = DdgsBackend(region="uk-en", transport=transport)
    assert built == []
    results = run(backend.search("yushan height", 3))
    assert results[0].url == "https://en.wikipedia.org/wiki/Yushan_(mountain)"
    with pytest.raises(RateLimited):
        run(backend.search("yushan height", 3))
    assert len(built) == 1
    method, url, kwargs = client.requests[0]
    assert (method, url) == ("POST", DDG_URL)
    assert kwargs == {"data": {"q": "yushan height", "b": "", "l": "uk-en"}, "timeout": 3.0}
    assert threading.main_thread().name not in client.threads


def test_the_default_client_is_ddgs_own() -> None:
    transport = DdgsTransport()
    assert isinstance(transport._factory(), HttpClient)  # builds a primp client; sends nothing


def test_cookies_and_get_params_reach_the_client() -> None:
    client = FakeHttpClient(FakeResponse(200, BRAVE_PAGE))
    transport = DdgsTransport(client_factory=lambda: client)
    backend = DdgsBackend(engines="brave", safesearch="on", transport=transport)
    assert [r.title for r in run(backend.search("yushan", 3))] == ["Yushan at Brave"]
    [(method, url, kwargs)] = client.requests
    assert (method, url) == ("GET", BRAVE_URL)
    assert kwargs["params"] == {"q": "yushan", "source": "web"}
    assert kwargs["cookies"] == {"us": "us", "useLocation": "0", "safesearch": "strict"}


@pytest.mark.parametrize(
    ("raised", "wrapped", "message"),
    [
        (TimeoutException("timed out"), SearchTimeout, "html.duckduckgo.com did not answer"),
        (RatelimitException("429"), RateLimited, "html.duckduckgo.com refused the query"),
        (
            DDGSException("ConnectError: Error('dns error')\nmore"),
            SearchError,
            r"^html.duckduckgo.com cannot be reached: its name does not resolve \(no network\?\)$",
        ),
        (
            DDGSException("error sending request > Connection refused (os error 111)"),
            SearchError,
            r"^html.duckduckgo.com cannot be reached: the connection failed \(no network\?\)$",
        ),
        (DDGSException("odd 502 thing"), SearchError, r"cannot be reached: DDGSException$"),
    ],
)
def test_ddgs_errors_are_wrapped_at_the_boundary(
    raised: Exception, wrapped: type[SearchError], message: str
) -> None:
    transport = DdgsTransport(client_factory=lambda: FakeHttpClient(raised))
    with pytest.raises(wrapped, match=message) as caught:
        run(DdgsBackend(transport=transport).search("q", 3))
    assert type(caught.value) is wrapped
    assert caught.value.__cause__ is raised


def test_a_hung_request_times_out_at_the_backstop() -> None:
    release = threading.Event()

    class HangingClient:
        def request(self, *_: object, **__: object) -> FakeResponse:
            release.wait(5)
            return FakeResponse(200, DDG_PAGE)

    transport = DdgsTransport(timeout_s=0.05, client_factory=HangingClient)

    async def main() -> SearchTimeout:
        try:
            await DdgsBackend(transport=transport).search("q", 3)
        except SearchTimeout as exc:
            return exc
        finally:
            release.set()  # lets the abandoned thread end, so the loop can shut down
        raise AssertionError("no timeout")

    assert str(run(main())) == "html.duckduckgo.com did not answer within 0.05 s"


# -- the Search tool in front of this backend ------------------------------------------------------


def test_search_backs_off_after_a_rate_limit_then_succeeds() -> None:
    transport = FakeTransport(HttpReply(202, DDG_ANOMALY_PAGE), ok(DDG_PAGE))
    fake_time = FakeTime()
    search = Search(DdgsBackend(transport=transport), clock=fake_time.clock, sleep=fake_time.sleep)
    assert search.min_interval_s == 1.0
    text = run(search('"tallest mountain in Taiwan"'))
    assert text.splitlines()[0] == (
        "1. Yushan (mountain) - Wikipedia — Yushan is the highest mountain in Taiwan at "
        "3,952 m (12,966 ft). (https://en.wikipedia.org/wiki/Yushan_(mountain))"
    )
    assert len(text.splitlines()) == 3
    assert fake_time.delays == [1.0]
    assert [r.payload["q"] for r in transport.requests] == ["tallest mountain in Taiwan"] * 2


def test_search_gives_a_clear_message_when_the_rate_limit_lasts() -> None:
    transport = FakeTransport(*[HttpReply(202, DDG_ANOMALY_PAGE)] * 3)
    fake_time = FakeTime()
    search = Search(
        DdgsBackend(transport=transport), retries=2, clock=fake_time.clock, sleep=fake_time.sleep
    )
    with pytest.raises(RateLimited) as caught:
        run(search("tallest mountain in Taiwan"))
    assert str(caught.value) == "Search is rate-limited by duckduckgo; try again in a minute"
    assert fake_time.delays == [1.0, 2.0]
    assert len(transport.requests) == 3
    assert transport.replies == []
