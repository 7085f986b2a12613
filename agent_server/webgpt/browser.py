"""The text browser WebGPT mode drives: its commands, its state, and what it shows the model.

Commands (Nakano et al., 2021, table 1), one per step:

    Search <query>        a page of results, each a numbered link
    Click <link id>       open a link of the current page
    Find in page <text>   scroll to the next line holding <text>
    Quote: <text>         save a verbatim span of the current page; a long one as `<start> … <end>`
    Scroll down | Scroll up | Top | Back
    End: Answer           stop browsing and answer from the quotes

Every command, a malformed one too, uses one action of the budget. A quote must be found on the
page being read (search results are not a page anyone opened); matching ignores case,
whitespace and link markup, and the quote is stored as the page says it. Quotes that overlap an
earlier one of the same page are merged into it. The state shown to the model is compact, as
WebGPT kept no memory between steps but this summary: the question, the quotes so far, the
visible window of the current page and the actions left.

Long (over 300 lines) because each browsing command's handler and the page state it changes are kept
together.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent_server.errors import BrowserError
from agent_server.webgpt.citations import Quote, domain
from agent_server.webgpt.readable import Link, Page, strip_link_markup
from tools.search import SearchResult

COMMANDS = (
    "Search <query>",
    "Click <link id>",
    "Find in page <text>",
    "Quote: <text>",
    "Scroll down",
    "Scroll up",
    "Top",
    "Back",
    "End: Answer",
)
_PATTERNS = (
    ("Search", re.compile(r"search\s*:?\s+(.+)", re.I)),
    ("Click", re.compile(r"click\s*:?\s*(?:link\s*)?【?(\d+)(?:†[^】]*】?)?\s*", re.I)),
    ("Find in page", re.compile(r"find in page\s*:?\s+(.+)", re.I)),
    ("Quote", re.compile(r"quote\s*:\s*(.+)", re.I | re.S)),
    ("Scroll down", re.compile(r"scroll down", re.I)),
    ("Scroll up", re.compile(r"scroll up", re.I)),
    ("Top", re.compile(r"top", re.I)),
    ("Back", re.compile(r"back", re.I)),
    ("End", re.compile(r"end\s*:?\s*answer", re.I)),
)
_ELLIPSIS = re.compile(r"\s*(?:…|\.\.\.)\s*")
_QUOTE_MARKS = "\"'“”‘’"


@dataclass(frozen=True)
class Command:
    name: str  # one of the names of `_PATTERNS`, or "Invalid"
    argument: str = ""


def parse_command(text: str) -> Command:
    """The command written in `text` (its first line, quotes around an argument dropped)."""
    written = text.strip()
    # A quote may run over lines; any other command is its first line.
    is_quote = written.lower().startswith("quote")
    line = " ".join(written.split()) if is_quote else written.split("\n", 1)[0].strip()
    for name, pattern in _PATTERNS:
        match = pattern.fullmatch(line.rstrip(".") if name != "Quote" else line)
        if match:
            argument = match.group(1).strip().strip(_QUOTE_MARKS).strip() if match.groups() else ""
            return Command(name, argument)
    return Command("Invalid", line[:200])


@dataclass(frozen=True)
class BrowserLimits:
    max_pages: int = 4  # pages opened by Click
    max_quotes: int = 4
    max_quote_chars: int = 600
    window_lines: int = 10  # lines of the current page shown at once
    line_chars: int = 100  # long paragraphs are wrapped to lines of this width


@dataclass
class _View:
    page: Page
    lines: list[str]
    top: int = 0
    is_results: bool = False


Search = Callable[[str], Awaitable[list[SearchResult]]]
OpenPage = Callable[[str], Awaitable[Page]]


@dataclass
class TextBrowser:
    """One question's browsing session: pages, history, quotes and the pages budget."""

    question: str
    search: Search
    open_page: OpenPage
    limits: BrowserLimits = field(default_factory=BrowserLimits)
    quotes: list[Quote] = field(default_factory=list)
    pages_opened: int = 0
    ended: bool = False
    _view: _View | None = None
    _history: list[_View] = field(default_factory=list)

    @property
    def page(self) -> Page | None:
        return None if self._view is None else self._view.page

    @property
    def on_results(self) -> bool:
        return self._view is not None and self._view.is_results

    async def run(self, command: Command) -> str:
        """Carry out `command`; the observation, or `BrowserError` saying what went wrong."""
        if command.name == "Invalid":
            raise BrowserError(f"not a command: {command.argument!r}; use one of: {_listed()}")
        if command.name == "End":
            if not self.quotes:
                raise BrowserError("no quotes yet: quote at least one passage before answering")
            self.ended = True
            return f"browsing done with {len(self.quotes)} quotes"
        handlers: dict[str, Callable[[str], Awaitable[str]]] = {
            "Search": self._search,
            "Click": self._click,
            "Find in page": self._find_in_page,
            "Quote": self._quote,
            "Scroll down": self._scroll_down,
            "Scroll up": self._scroll_up,
            "Top": self._top,
            "Back": self._back,
        }
        return await handlers[command.name](command.argument)

    async def _search(self, query: str) -> str:
        results = await self.search(query)
        lines = [
            line
            for n, r in enumerate(results)
            for line in (f"【{n}†{r.title}】 ({domain(r.url)})", r.snippet, "")
        ]
        links = tuple(Link(n, r.title, r.url) for n, r in enumerate(results))
        page = Page(f"search:{query}", f"Search results for: {query}", "\n".join(lines), links)
        self._go(page, is_results=True)
        return f"{len(results)} results for {query!r}"

    async def _click(self, argument: str) -> str:
        view = self._require_view()
        number = int(argument)
        link = next((k for k in view.page.links if k.number == number), None)
        if link is None:
            raise BrowserError(f"no link {number} on this page")
        if self.pages_opened >= self.limits.max_pages:
            raise BrowserError(f"page limit reached ({self.limits.max_pages}); quote or answer")
        self.pages_opened += 1
        page = await self.open_page(link.url)
        self._go(page)
        return f"opened {page.title} ({domain(page.url)}), {len(self._view_lines())} lines"

    async def _find_in_page(self, text: str) -> str:
        view = self._require_view()
        wanted = _normal(text)
        if not wanted:
            raise BrowserError("Find in page needs some text to find")
        order = [*range(view.top + 1, len(view.lines)), *range(view.top + 1)]
        for i in order:
            if wanted in _normal(strip_link_markup(view.lines[i])):
                view.top = i
                return f"found {text!r} at line {i + 1}"
        raise BrowserError(f"{text!r} is not on this page")

    async def _quote(self, text: str) -> str:
        view = self._require_view()
        if view.is_results:
            raise BrowserError("quote from a page you opened, not from the search results")
        if len(self.quotes) >= self.limits.max_quotes:
            raise BrowserError(f"quote limit reached ({self.limits.max_quotes}); End: Answer")
        page_text = strip_link_markup(view.page.text)
        span = find_span(page_text, text)
        if span is None:
            raise BrowserError("that text is not on this page; quote it exactly as written")
        start, end = span
        for i, old in enumerate(self.quotes):
            merged = _merge(old, page_text, start, end)
            if old.url == view.page.url and merged is not None:
                if len(merged) > self.limits.max_quote_chars:
                    raise BrowserError(f"this overlaps quote [{old.number}]; quote something else")
                self.quotes[i] = Quote(old.number, old.title, old.url, merged)
                return f"merged into quote [{old.number}]"
        quoted = page_text[start:end]
        if len(quoted) > self.limits.max_quote_chars:
            raise BrowserError(
                f"quote too long ({len(quoted)} characters; at most {self.limits.max_quote_chars})"
            )
        number = len(self.quotes) + 1
        self.quotes.append(Quote(number, view.page.title, view.page.url, quoted))
        return f"saved quote [{number}]"

    async def _scroll_down(self, _: str) -> str:
        view = self._require_view()
        last = max(len(view.lines) - self.limits.window_lines, 0)
        if view.top >= last:
            raise BrowserError("already at the end of the page")
        view.top = min(view.top + self.limits.window_lines, last)
        return f"at line {view.top + 1}"

    async def _scroll_up(self, _: str) -> str:
        view = self._require_view()
        if view.top == 0:
            raise BrowserError("already at the top of the page")
        view.top = max(view.top - self.limits.window_lines, 0)
        return f"at line {view.top + 1}"

    async def _top(self, _: str) -> str:
        self._require_view().top = 0
        return "at the top of the page"

    async def _back(self, _: str) -> str:
        if not self._history:
            raise BrowserError("no page to go back to")
        self._view = self._history.pop()
        return f"back at {self._view.page.title}"

    def _go(self, page: Page, *, is_results: bool = False) -> None:
        if self._view is not None:
            self._history.append(self._view)
        self._view = _View(page, _wrapped(page.text, self.limits.line_chars), 0, is_results)

    def _require_view(self) -> _View:
        if self._view is None:
            raise BrowserError("no page open yet: Search first")
        return self._view

    def _view_lines(self) -> list[str]:
        return [] if self._view is None else self._view.lines

    def render(self, actions_left: int) -> str:
        """The state the model reads before choosing its next command."""
        parts = [f"Question: {self.question}", "Quotes:"]
        parts += [f"[{q.number}] {q.title} ({q.domain}): {_clip(q.text, 120)}" for q in self.quotes]
        if not self.quotes:
            parts.append("(none yet)")
        view = self._view
        if view is None:
            parts.append("Current page: none")
        else:
            shown = view.lines[view.top : view.top + self.limits.window_lines]
            where = f"lines {view.top + 1}-{view.top + len(shown)} of {len(view.lines)}"
            parts.append(f"Current page: {view.page.title} ({view.page.url}), {where}")
            parts += shown
        parts.append(f"Actions left: {actions_left}. Commands: {_listed()}")
        return "\n".join(parts)


def find_span(text: str, quote: str) -> tuple[int, int] | None:
    """Where `quote` is in `text`, ignoring case and whitespace; `a … b` spans from a to b."""
    quote = quote.strip().strip(_QUOTE_MARKS).strip()
    ends = [e for e in _ELLIPSIS.split(quote) if e.strip()]
    if not ends or len(ends) > 2:
        return None
    flat, where = _flattened(text)
    first = flat.find(_normal(ends[0]))
    if first < 0:
        return None
    stop = first + len(_normal(ends[0]))
    if len(ends) == 2:
        last = flat.find(_normal(ends[1]), stop)
        if last < 0:
            return None
        stop = last + len(_normal(ends[1]))
    return where[first], where[stop - 1] + 1


def _flattened(text: str) -> tuple[str, list[int]]:
    """`text` casefolded with runs of whitespace as one space, and each character's origin."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            if chars and chars[-1] != " ":
                chars.append(" ")
                where.append(i)
            continue
        folded = ch.casefold()
        chars.extend(folded)
        where.extend([i] * len(folded))
    return "".join(chars), where


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _merge(old: Quote, page_text: str, start: int, end: int) -> str | None:
    """The union of `old` and page_text[start:end] if they overlap on the page, else None."""
    at = page_text.find(old.text)
    if at < 0 or end < at or start > at + len(old.text):
        return None
    return page_text[min(start, at) : max(end, at + len(old.text))]


def _wrapped(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines():
        lines.extend(textwrap.wrap(paragraph, width, break_on_hyphens=False) or [""])
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _clip(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _listed() -> str:
    return " | ".join(COMMANDS)
