"""Fetching pages safely (`agent_server.webgpt.pages`), against real HTTP on loopback.

Refusals and the per-hop address checks use an `httpx.MockTransport` and an injected resolver,
so no test reaches beyond this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from agent_server.errors import PageError
from agent_server.webgpt.pages import PageFetcher, is_public
from agent_server.webgpt.readable import TRUNCATED, Page


def fetch(url: str, **options: Any) -> Page:
    async def go() -> Page:
        fetcher = PageFetcher(**options)
        try:
            return await fetcher.fetch(url)
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


def local(url: str, **options: Any) -> Page:
    return fetch(url, allow_private=True, **options)


def resolver(table: dict[str, list[str]]) -> Callable[[str], Awaitable[list[str]]]:
    async def resolve(host: str) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


class Recorder:
    """A fake web behind `httpx.MockTransport`: answers by the Host header, records requests."""

    def __init__(self, answers: dict[str, httpx.Response]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers[request.headers["host"]]


def test_an_article_is_read_with_absolute_links(fixture_web: str) -> None:
    page = local(f"{fixture_web}/article")
    assert page.url == f"{fixture_web}/article"
    assert page.title == "The Fixture Article"
    assert page.text.startswith("Paris in spring\n\nParis is the capital of 【0†France】")
    assert "a script link" in page.text and "About us" not in page.text
    assert "Copyright" not in page.text
    assert [(link.text, link.url) for link in page.links] == [
        ("France", f"{fixture_web}/other"),
        ("Paris on Wikipedia", "https://en.wikipedia.org/wiki/Paris"),
        ("the Louvre", f"{fixture_web}/other?section=museums"),
    ]


def test_scripts_styles_and_hidden_text_are_not_read(fixture_web: str) -> None:
    page = local(f"{fixture_web}/scripts")
    assert page.text == "Visible paragraph.\n\nVisible too."
    assert page.title == "Scripts"


def test_a_redirect_chain_is_followed(fixture_web: str) -> None:
    page = local(f"{fixture_web}/redirect/a")
    assert page.url == f"{fixture_web}/article"
    assert page.title == "The Fixture Article"


def test_redirects_beyond_the_limit_are_an_error(fixture_web: str) -> None:
    assert local(f"{fixture_web}/redirect/a", max_redirects=2).title == "The Fixture Article"
    with pytest.raises(PageError, match=r"too many redirects \(more than 1\)"):
        local(f"{fixture_web}/redirect/a", max_redirects=1)


def test_a_redirect_loop_is_an_error(fixture_web: str) -> None:
    with pytest.raises(PageError, match=r"^could not open \S+/loop/a: too many redirects"):
        local(f"{fixture_web}/loop/a")


def test_a_redirect_to_another_scheme_is_refused(fixture_web: str) -> None:
    with pytest.raises(PageError, match="redirects to ftp://127.0.0.1/file, and only http"):
        local(f"{fixture_web}/redirect/ftp")


def test_a_huge_page_is_cut_at_max_bytes_and_rendered(fixture_web: str) -> None:
    start = time.monotonic()
    page = local(f"{fixture_web}/huge", max_bytes=300_000)
    assert time.monotonic() - start < 5
    assert page.title == "Huge"
    assert page.text.startswith("Paragraph 0 of a huge page.\n\nParagraph 1 of")
    assert page.text.endswith("\n" + TRUNCATED)
    assert 100_000 < len(page.text) < 300_000


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/image.png", "it is not HTML or plain text (image/png)"),
        ("/octet", "it is not HTML or plain text (application/octet-stream)"),
        ("/mislabeled", "it is not text (declared text/html, but the content is binary)"),
        ("/untyped", "it is not text (no content type given, and the content is binary)"),
        ("/missing", "the server answered HTTP 404"),
    ],
)
def test_what_is_not_a_readable_page_is_an_error(fixture_web: str, path: str, reason: str) -> None:
    with pytest.raises(PageError) as caught:
        local(f"{fixture_web}{path}")
    assert str(caught.value) == f"could not open {fixture_web}{path}: {reason}"


def test_html_without_a_content_type_is_sniffed(fixture_web: str) -> None:
    assert local(f"{fixture_web}/untyped-html").title == "The Fixture Article"


def test_plain_text_keeps_its_lines_and_has_no_links(fixture_web: str) -> None:
    page = local(f"{fixture_web}/plain")
    assert page.text == "First line\n\nSecond line [0†not a link]"
    assert page.links == ()
    assert page.title == "plain"


def test_the_charset_in_the_header_is_used(fixture_web: str) -> None:
    page = local(f"{fixture_web}/latin1")
    assert page.title == "Café"
    assert page.text == "Crème brûlée à Paris"


def test_a_resolved_host_is_connected_by_address_and_named_in_the_host_header(
    fixture_web: str,
) -> None:
    port = httpx.URL(fixture_web).port
    asked: list[str] = []

    async def resolve(host: str) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    page = local(f"http://fixture.test:{port}/headers", resolve=resolve, user_agent="tester/1")
    assert asked == ["fixture.test"]
    assert page.url == f"http://fixture.test:{port}/headers"
    assert page.text == f"host=fixture.test:{port}\nuser-agent=tester/1"


@pytest.mark.parametrize("path", ["/slow", "/trickle"])
def test_a_slow_or_trickling_server_is_cut_off_by_the_wall_clock(
    fixture_web: str, path: str
) -> None:
    start = time.monotonic()
    with pytest.raises(PageError, match="did not arrive within 0.5 s") as caught:
        local(f"{fixture_web}{path}", timeout_s=0.5)
    assert time.monotonic() - start < 2.5
    assert isinstance(caught.value.__cause__, TimeoutError)


def test_a_closed_port_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    with pytest.raises(PageError, match="cannot connect") as caught:
        local(f"http://127.0.0.1:{port}/")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.8.9.10:8000/admin",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[2002:a00:1::]/",
        "http://224.0.0.1/",
    ],
)
def test_the_default_fetcher_refuses_non_public_addresses(url: str) -> None:
    fake = Recorder({})
    with pytest.raises(PageError, match="is not a public address"):
        fetch(url, transport=fake.transport)
    assert fake.requests == []


def test_the_default_fetcher_refuses_the_loopback_fixture_server(fixture_web: str) -> None:
    with pytest.raises(PageError, match=r"127\.0\.0\.1 is not a public address"):
        fetch(f"{fixture_web}/article")


@pytest.mark.parametrize("addresses", [["192.168.0.7"], ["93.184.216.34", "10.0.0.1"]])
def test_a_host_resolving_to_any_private_address_is_refused(addresses: list[str]) -> None:
    fake = Recorder({})
    resolve = resolver({"intranet.test": addresses})
    with pytest.raises(PageError, match="intranet.test is at .+, which is not a public address"):
        fetch("http://intranet.test/", transport=fake.transport, resolve=resolve)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.test/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("http://user:secret@example.test/", "user name or password"),
        ("http://[::1/", "not a valid URL"),
        ("http:///path-only", "no host"),
        ("http://unknown.test/", "cannot resolve unknown.test"),
    ],
)
def test_urls_that_are_not_opened(url: str, reason: str) -> None:
    fake = Recorder({})
    with pytest.raises(PageError, match=reason):
        fetch(url, transport=fake.transport, resolve=resolver({}))
    assert fake.requests == []


def test_a_public_host_is_fetched_at_its_checked_address() -> None:
    fake = Recorder({"public.test": httpx.Response(200, html="<title>Public</title><p>Hi</p>")})
    resolve = resolver({"public.test": ["93.184.216.34"]})
    page = fetch("https://public.test/a?b=1", transport=fake.transport, resolve=resolve)
    assert page.title == "Public" and page.text == "Hi"
    (request,) = fake.requests
    assert str(request.url) == "https://93.184.216.34/a?b=1"
    assert request.extensions["sni_hostname"] == "public.test"


def test_every_redirect_hop_is_checked_again() -> None:
    fake = Recorder(
        {"public.test": httpx.Response(302, headers={"Location": "http://evil.test/secret"})}
    )
    resolve = resolver({"public.test": ["93.184.216.34"], "evil.test": ["10.0.0.1"]})
    with pytest.raises(PageError) as caught:
        fetch("http://public.test/", transport=fake.transport, resolve=resolve)
    assert str(caught.value) == (
        "could not open http://public.test/: it redirects to http://evil.test/secret, "
        "and evil.test is at 10.0.0.1, which is not a public address"
    )
    assert [request.headers["host"] for request in fake.requests] == ["public.test"]


def test_undeclared_charset_falls_back_to_utf8_with_replacement() -> None:
    answer = httpx.Response(200, headers={"Content-Type": "text/html"}, content=b"<p>caf\xe9</p>")
    fake = Recorder({"public.test": answer})
    resolve = resolver({"public.test": ["93.184.216.34"]})
    assert fetch("http://public.test/", transport=fake.transport, resolve=resolve).text == (
        "caf\ufffd"
    )


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),
        ("ff02::1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public
