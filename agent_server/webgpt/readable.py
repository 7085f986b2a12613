"""HTML to a readable text page with numbered links, the way a browsing model sees a page.

A `Page` is lines of text. Each link to another http(s) page appears inline as 【n†link text】
and is listed in `Page.links` under the same number, counted from 0 in reading order. Links to
the page itself (in-page anchors) and to other schemes (javascript:, mailto:, data:) keep their
text but get no number. The markers 【 and 】 are reserved for links: where a page's own text
has them they become [ and ], so a page cannot forge a link.

What is read: the first `<main>` or `role="main"` element, else the only `<article>`, else the
whole body (also when the chosen part has no text). Scripts, styles, embedded objects, form
controls, comments and hidden elements (`hidden`, `aria-hidden="true"`, inline `display:none`
or `visibility:hidden`) are dropped. Paragraph-like blocks are set apart by a blank line, other
blocks start a new line, list items start with "- ", table cells are joined by " | ".

Never raises on bad input: empty, binary or unparsable input gives a page with empty text.

Left out: style sheets (only inline styles can hide), images (an `alt` text only names an
otherwise empty link), indentation in `<pre>` and nested lists, frames, text that only
JavaScript would render. The HTML parser flattens nesting deeper than 256 elements.

Long (over 300 lines) because it is one HTML walk: the block, inline and skipped elements and
the link numbering share its state.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import lxml.etree
import lxml.html

LINK_MARKUP = re.compile(r"【(?P<number>\d+)†(?P<text>[^】]*)】")
TRUNCATED = "[page truncated]"

_DROPPED = frozenset(
    "script style noscript template svg canvas iframe frame frameset object embed applet head "
    "audio video picture map input button select option optgroup datalist textarea".split()
)
# A blank line around these: they hold paragraphs, or sit between them.
_PARAGRAPHS = frozenset(
    "p h1 h2 h3 h4 h5 h6 blockquote pre table ul ol dl figure section article main header "
    "footer nav aside address hr details fieldset form".split()
)
_LINES = frozenset("div br tr li dt dd caption figcaption summary center legend".split())
_CELLS = frozenset({"td", "th"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[^\S\n]+")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_CONTROL_BYTES = bytes(range(9)) + bytes(range(14, 32))
_MARKERS = str.maketrans("【】", "[]")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
# WHATWG encoding labels: browsers read these as windows-1252, and so do pages written for them.
_AS_WINDOWS_1252 = frozenset({"iso-8859-1", "iso8859-1", "latin1", "latin-1", "us-ascii", "ascii"})


@dataclass(frozen=True)
class Link:
    """A numbered link: its number in the page text, visible text and absolute http(s) URL."""

    number: int
    text: str
    url: str


@dataclass(frozen=True)
class Page:
    """A page as the model reads it: lines of text with links inline as 【n†link text】."""

    url: str
    title: str  # <title>, else the first <h1>, else the URL
    text: str
    links: tuple[Link, ...] = ()  # links[n] is the link written 【n†…】


def strip_link_markup(text: str) -> str:
    """The text with each 【n†link text】 replaced by its link text."""
    return LINK_MARKUP.sub(r"\g<text>", text)


def looks_binary(data: str | bytes) -> bool:
    """Whether the start of `data` looks like binary content rather than text."""
    sample = data[:1024].encode("utf-8", "replace") if isinstance(data, str) else data[:1024]
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return b"\x00" in sample or controls * 10 > len(sample)


def decode(data: bytes, charset: str | None = None, *, html: bool = True) -> str:
    """`data` as text: by its byte-order mark, else `charset`, else an HTML meta tag, else UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace")
    if charset is None and html and (meta := _META_CHARSET.search(data[:4096])):
        charset = meta.group(1).decode("ascii", "replace")
    name = (charset or "utf-8").strip().strip("\"'").lower()
    try:
        return data.decode("cp1252" if name in _AS_WINDOWS_1252 else name, "replace")
    except (LookupError, UnicodeError):  # an unknown name, or a codec that is not for text
        return data.decode("utf-8", "replace")


def readable(
    html: str | bytes, url: str, *, max_chars: int = 100_000, max_links: int = 200
) -> Page:
    """The readable text of an HTML page at `url`, its title and its numbered links."""
    if isinstance(html, bytes):
        html = decode(html)
    if looks_binary(html) or not html.strip():
        return Page(url, url, "")
    # Parsed as UTF-8 bytes: a str with an XML encoding declaration makes lxml raise, and bytes
    # without a declared encoding would leave the guess to libxml2.
    parser = lxml.html.HTMLParser(
        encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True
    )
    try:
        root = lxml.html.document_fromstring(html.encode("utf-8", "replace"), parser=parser)
    except (lxml.etree.LxmlError, ValueError):
        return Page(url, url, "")
    title = _title(root)
    base = _base_url(root, url)
    _prune(root)
    body = root.find("body")
    body = root if body is None else body
    main = _main_part(body)
    writer = _render(main if main is not None else body, base, url, max_chars, max_links)
    text = writer.text()
    if main is not None and not text:
        writer = _render(body, base, url, max_chars, max_links)
        text = writer.text()
    if not title:
        heading = body.find(".//h1")
        title = _inner_text(heading) if heading is not None else ""
    text, kept = _truncate(text, max_chars)
    return Page(url, title[:300] or url, text, tuple(writer.links[:kept]))


def plain_page(text: str, url: str, title: str, *, max_chars: int = 100_000) -> Page:
    """A page of plain text: no links, its lines kept, whitespace normalised in each line."""
    text = _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).translate(_MARKERS)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    body, _ = _truncate(_join_lines(lines), max_chars)
    return Page(url, _normalise(title) or url, body)


def _title(root: lxml.html.HtmlElement) -> str:
    title = root.find("head/title")
    if title is None:
        title = root.find(".//title")  # some parsers' trees put a stray <title> in the body
    return _inner_text(title) if title is not None else ""


def _base_url(root: lxml.html.HtmlElement, url: str) -> str:
    base = root.find(".//base[@href]")
    if base is None:
        return url
    resolved = _resolve(url, base.get("href", ""))
    return resolved or url


def _prune(root: lxml.html.HtmlElement) -> None:
    doomed = [
        element
        for element in root.iter()
        if not isinstance(element.tag, str) or element.tag in _DROPPED or _hidden(element)
    ]
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()  # keeps the element's tail: it is its parent's text


def _hidden(element: lxml.html.HtmlElement) -> bool:
    return (
        element.get("hidden") is not None
        or element.get("aria-hidden", "").strip().lower() == "true"
        or _HIDDEN_STYLE.search(element.get("style", "")) is not None
    )


def _main_part(body: lxml.html.HtmlElement) -> lxml.html.HtmlElement | None:
    for element in body.iter():
        if element.tag == "main" or element.get("role", "").strip().lower() == "main":
            return element
    articles = list(body.iter("article"))
    return articles[0] if len(articles) == 1 else None


@dataclass
class _Writer:
    """Collects text, owing line breaks until the next text so that adjacent blocks share one."""

    base: str
    page_url: str
    max_chars: int
    max_links: int
    parts: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    size: int = 0
    pending: int = 0  # line breaks owed: 1 starts a line, 2 also leaves a blank one
    prefix: str = ""  # a list item's "- ", owed to its first text
    cells: int = 0  # inside a table cell a break is a space, so a row stays on one line
    pre: int = 0

    @property
    def full(self) -> bool:
        return self.size > self.max_chars

    def write(self, text: str | None) -> None:
        if not text:
            return
        text = _CONTROLS.sub("", text).translate(_MARKERS)
        if not self.pre:
            self._emit(_WHITESPACE.sub(" ", text))
            return
        for i, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")):
            if i:
                self.pending = min(self.pending + 1, 2)  # so an empty line in it stays
            self._emit(line)

    def newline(self, count: int) -> None:
        if self.cells:
            self._emit(" ")
        else:
            self.pending = max(self.pending, count)

    def link(self, element: lxml.html.HtmlElement) -> bool:
        """Writes `element` as a numbered link if it is one; false if it is only text."""
        url = _resolve(self.base, element.get("href", ""))
        if url is None or url == urldefrag(self.page_url).url or len(self.links) >= self.max_links:
            return False
        text = _inner_text(element) or _link_name(element, url)
        link = Link(len(self.links), text.translate(_MARKERS), url)
        self.links.append(link)
        self._emit(f"【{link.number}†{link.text}】")
        return True

    def text(self) -> str:
        lines = [_SPACES.sub(" ", line).strip() for line in "".join(self.parts).split("\n")]
        return _join_lines(lines)

    def _emit(self, text: str) -> None:
        if not text:
            return
        if text.isspace():
            if not self.pending:  # a space between inline elements; at a line break it is moot
                self._append(" ")
            return
        if self.pending:
            self._append("\n" * self.pending if self.parts else "")
            self.pending = 0
        if self.prefix:
            self._append(self.prefix)
            self.prefix = ""
        self._append(text)

    def _append(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)


def _render(
    root: lxml.html.HtmlElement, base: str, page_url: str, max_chars: int, max_links: int
) -> _Writer:
    # An explicit stack, not recursion: nesting depth is up to the page.
    writer = _Writer(base, page_url, max_chars, max_links)
    stack: list[tuple[lxml.html.HtmlElement, bool]] = [(root, False)]
    while stack and not writer.full:
        element, closing = stack.pop()
        tag = element.tag
        if closing:
            _close(writer, tag)
            if element is not root:
                writer.write(element.tail)
            continue
        if tag == "a" and element.get("href") is not None and writer.link(element):
            stack.append((element, True))
            continue
        _open(writer, element, tag)
        writer.write(element.text)
        stack.append((element, True))
        stack.extend((child, False) for child in reversed(element))
    return writer


def _open(writer: _Writer, element: lxml.html.HtmlElement, tag: str) -> None:
    if tag in _PARAGRAPHS:
        writer.newline(2)
    elif tag in _LINES:
        writer.newline(1)
    if tag == "li" and not writer.cells:
        writer.prefix = "- "
    elif tag in _CELLS:
        previous = element.getprevious()
        if previous is not None and previous.tag in _CELLS:
            writer.write(" | ")
        writer.cells += 1
    elif tag == "pre":
        writer.pre += 1


def _close(writer: _Writer, tag: str) -> None:
    if tag in _CELLS:
        writer.cells -= 1
    elif tag == "pre":
        writer.pre -= 1
    elif tag == "li":
        writer.prefix = ""  # an empty item's marker must not land on the text after the list
    if tag in _PARAGRAPHS:
        writer.newline(2)
    elif tag in _LINES and tag != "br":
        writer.newline(1)


def _resolve(base: str, href: str) -> str | None:
    """`href` as an absolute http(s) URL without its fragment, or None if it is not one."""
    href = re.sub(r"[\t\n\r]", "", href).strip()
    try:
        url = urldefrag(urljoin(base, href)).url
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def _link_name(element: lxml.html.HtmlElement, url: str) -> str:
    """A name for a link without visible text: its label, an image's alt text, or its URL's end."""
    for name in (element.get("aria-label"), element.get("title")):
        if name and name.strip():
            return _normalise(name)
    for image in element.iter("img"):
        if image.get("alt", "").strip():
            return _normalise(image.get("alt", ""))
    parts = urlsplit(url)
    last = unquote(parts.path.rstrip("/").rpartition("/")[2])
    return _normalise(last) or parts.hostname or url


def _inner_text(element: lxml.etree._Element) -> str:
    return _normalise("".join(str(text) for text in element.itertext()))


def _normalise(text: str) -> str:
    return _WHITESPACE.sub(" ", _CONTROLS.sub("", text)).strip()


def _join_lines(lines: list[str]) -> str:
    """The lines joined, with no blank line at either end and never two in a row."""
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip("\n")


def _truncate(text: str, max_chars: int) -> tuple[str, int]:
    """`text` cut to about `max_chars`, and how many links it still holds."""
    if len(text) > max_chars:
        cut = text[:max_chars]
        line_end = cut.rfind("\n")
        if line_end > max_chars // 2:  # end on a whole line unless that loses too much
            cut = cut[:line_end]
        if cut.rfind("【") > cut.rfind("】"):
            cut = cut[: cut.rfind("【")]  # never half a link
        text = f"{cut.rstrip()}\n{TRUNCATED}"
    return text, len(LINK_MARKUP.findall(text))
