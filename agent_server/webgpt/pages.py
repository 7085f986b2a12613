"""Fetching web pages for a browsing model, safely, as readable `Page`s.

Rules:
- Only http and https URLs, without user:password. Each host is resolved (the resolver is
  injectable) and every address it resolves to must be public, unless `allow_private`; the
  request then goes to the checked address itself (Host header and TLS server name keep the
  host name), so a second DNS answer cannot point it elsewhere. Hence proxies from the
  environment are ignored, and connections are not kept alive: a kept connection to a shared
  address would carry another host's TLS name.
- Redirects are followed here, at most `max_redirects`, and every hop is checked again.
- One wall-clock limit covers the whole fetch, so a server that trickles bytes is cut off too.
- At most `max_bytes` of the body are read; a longer page is rendered from what arrived and ends
  with the line "[page truncated]".
- HTML (`text/html`, `application/xhtml+xml`) is rendered by `readable`, `text/plain` by
  `plain_page`; a body without a content type is sniffed. Anything else, a body that looks
  binary, or a status other than 2xx is an error.

Every failure is a `PageError` whose message is one line for the model, e.g.
"could not open http://x/: it is not HTML or plain text (image/png)"; errors from httpx and the
resolver are wrapped with `raise ... from exc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urljoin

import httpx

from agent_server.errors import PageError
from agent_server.webgpt.readable import TRUNCATED, Page, decode, looks_binary, plain_page, readable

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)
# What a body without a content type must hold near its start to be read as HTML.
_HTML_SIGNS = re.compile(rb"<(!doctype html|html|head|body|title|p|div|a)[\s>]", re.IGNORECASE)


async def _getaddrinfo(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class PageFetcher:
    """Opens http(s) pages as `Page`s, refusing private addresses; one per service, shareable."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        max_bytes: int = 2_000_000,
        max_redirects: int = 5,
        allow_private: bool = False,
        user_agent: str = "agent-server/0.1 (+WebGPT-style browsing)",
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Callable[[str], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.allow_private = allow_private
        self._user_agent = user_agent
        self._transport = transport
        self._resolve = resolve or _getaddrinfo
        self._client: httpx.AsyncClient | None = None  # made on first use, in the caller's loop

    async def fetch(self, url: str) -> Page:
        """The page at `url`, after redirects; its `url` is the address finally read."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url)
        except TimeoutError as exc:
            reason = f"the page did not arrive within {self.timeout_s:g} s"
            raise PageError(f"could not open {url}: {reason}") from exc

    async def aclose(self) -> None:
        """Closes the connections; the fetcher may not be used afterwards."""
        if self._client is not None:
            await self._client.aclose()

    async def _follow(self, url: str) -> Page:
        current = url
        for _ in range(self.max_redirects + 1):
            target, address = await self._check(url, current)
            try:
                async with self._send(target, address) as response:
                    if not response.is_redirect:
                        return await self._page(url, current, response)
                    location = response.headers["location"].strip()
            except httpx.HTTPError as exc:
                raise PageError(f"could not open {url}: {_describe(exc)}") from exc
            current = urljoin(current, location)
        raise PageError(
            f"could not open {url}: too many redirects (more than {self.max_redirects})"
        )

    async def _check(self, url: str, current: str) -> tuple[httpx.URL, str]:
        """`current` parsed, and the checked address to connect to; else `PageError`."""

        def refuse(reason: str) -> PageError:
            hop = "" if current == url else f"it redirects to {current}, and "
            return PageError(f"could not open {url}: {hop}{reason}")

        try:
            target = httpx.URL(current)
        except httpx.InvalidURL as exc:
            raise refuse(f"it is not a valid URL ({exc})") from exc
        if target.scheme not in ("http", "https"):
            raise refuse("only http and https pages can be opened")
        if target.userinfo:
            raise refuse("URLs with a user name or password are not opened")
        if not target.host:
            raise refuse("the URL has no host")
        try:
            addresses = [ipaddress.ip_address(target.host)]
        except ValueError:  # a name, not an address
            try:
                resolved = await self._resolve(target.host)
                addresses = [ipaddress.ip_address(address) for address in resolved]
            except (OSError, ValueError) as exc:
                raise refuse(f"cannot resolve {target.host} ({exc})") from exc
        if not addresses:
            raise refuse(f"cannot resolve {target.host}")
        for address in addresses:
            if not (self.allow_private or is_public(address)):
                if str(address) == target.host:
                    raise refuse(f"{address} is not a public address")
                raise refuse(f"{target.host} is at {address}, which is not a public address")
        return target, str(addresses[0])

    @contextlib.asynccontextmanager
    async def _send(self, target: httpx.URL, address: str) -> AsyncIterator[httpx.Response]:
        client = self._http()
        request = client.build_request(
            "GET",
            target.copy_with(host=address),
            headers={"Host": target.netloc.decode("ascii")},
            extensions={"sni_hostname": target.host},
        )
        response = await client.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def _page(self, url: str, current: str, response: httpx.Response) -> Page:
        def fail(reason: str) -> PageError:
            return PageError(f"could not open {url}: {reason}")

        if not response.is_success:
            raise fail(f"the server answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "")
        media = content_type.partition(";")[0].strip().lower()
        charset = _CHARSET.search(content_type)
        if media and media not in _HTML_TYPES and media != "text/plain":
            raise fail(f"it is not HTML or plain text ({media})")
        body, truncated = await self._read(response)
        if looks_binary(body):
            declared = f"declared {media}, but" if media else "no content type given, and"
            raise fail(f"it is not text ({declared} the content is binary)")
        encoding = charset.group(1) if charset else None
        if media == "text/plain" or not (media or _HTML_SIGNS.search(body[:1024])):
            title = current.rstrip("/").rpartition("/")[2] or current
            page = plain_page(decode(body, encoding, html=False), current, title)
        else:
            page = readable(decode(body, encoding), current)
        if truncated and not page.text.endswith(TRUNCATED):
            page = dataclasses.replace(page, text=f"{page.text}\n{TRUNCATED}".lstrip("\n"))
        return page

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        """The body, cut at `max_bytes`, and whether it was cut."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                break
        return b"".join(chunks)[: self.max_bytes], size > self.max_bytes

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                headers={"User-Agent": self._user_agent, "Accept": _ACCEPT},
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(max_keepalive_connections=0),
                follow_redirects=False,
                trust_env=False,
            )
        return self._client


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `address` is a public unicast address, also through an IPv4 inside an IPv6."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved)


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "the server did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc or 'refused'})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
