"""Quotes, the references built from them, and the `[n]` markers that cite them in an answer.

A WebGPT answer may only cite what was quoted, so markers are checked as the answer streams:
`MarkerFilter` holds back text from a `[` until it knows whether a marker follows, keeps the
numbers that name a quote (`[2]`, `[1, 3]`, `[^2]` become `[2]`, `[1][3]`, `[2]`) and removes
the rest with the space before them, so an invalid marker is never shown, not even for a moment.

The answering context lists each quote as `[n] <title> (<domain>)` and its extract, and the
reference list groups quotes of one page: `[1, 2] <title> (<domain>)` (Nakano et al., 2021).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Quote:
    number: int  # 1-based, as cited
    title: str
    url: str
    text: str  # a verbatim span of the page's readable text

    @property
    def domain(self) -> str:
        return domain(self.url)


@dataclass(frozen=True)
class Reference:
    numbers: tuple[int, ...]
    title: str
    url: str
    domain: str

    def __str__(self) -> str:
        return f"[{', '.join(map(str, self.numbers))}] {self.title} ({self.domain})"


def domain(url: str) -> str:
    """`example.org` of `https://www.example.org/a`; a corpus page (`doc://id`) is `local`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "local"
    host = parts.hostname or ""
    return host.removeprefix("www.")


def references(quotes: Sequence[Quote]) -> list[Reference]:
    """One reference per page, in order of first citation, listing its quotes' numbers."""
    grouped: dict[str, list[Quote]] = {}
    for quote in quotes:
        grouped.setdefault(quote.url, []).append(quote)
    return [
        Reference(tuple(q.number for q in group), group[0].title, url, group[0].domain)
        for url, group in grouped.items()
    ]


def answer_context(quotes: Sequence[Quote]) -> str:
    """The quotes as the answering model reads them."""
    return "\n\n".join(f"[{q.number}] {q.title} ({q.domain})\n{q.text}" for q in quotes)


# `[2]`, `[1, 3]`, `[1,3]`, `[^2]`; a lone `[` of other text is left alone.
_MARKER = re.compile(r"\[\^?(\d{1,3}(?:\s*,\s*\^?\d{1,3})*)\]")
# What may still grow into a marker: held back until the next text decides.
_PARTIAL = re.compile(r"\[\^?(\d{1,3}(\s*,\s*\^?(\d{1,3})?)*\s*)?")
MARKER_NUMBERS = re.compile(r"\[(\d+)\]")


class MarkerFilter:
    """Streams an answer's text with every marker checked against the quotes' numbers."""

    def __init__(self, valid: Sequence[int]) -> None:
        self._valid = frozenset(valid)
        self._pending = ""
        self.cited: list[int] = []  # numbers shown, in order, repeats included
        self.removed: list[str] = []  # markers that named no quote

    def feed(self, text: str) -> str:
        """The part of the text so far that is safe to show."""
        self._pending += text
        shown: list[str] = []
        while (start := self._pending.find("[")) >= 0:
            before, rest = self._pending[:start], self._pending[start:]
            marker = _MARKER.match(rest)
            if marker is None and _PARTIAL.fullmatch(rest):
                shown.append(before.rstrip())  # the space may belong to a marker to remove
                self._pending = before[len(before.rstrip()) :] + rest
                return "".join(shown)
            if marker is None:  # a bracket of ordinary text
                shown.append(before + "[")
                self._pending = rest[1:]
                continue
            repaired = self._repair(marker)
            shown.append(before + repaired if repaired else before.rstrip())
            self._pending = rest[marker.end() :]
        body = self._pending.rstrip()
        shown.append(body)
        self._pending = self._pending[len(body) :]
        return "".join(shown)

    def finish(self) -> str:
        """What is still held back; a marker left unclosed at the end is dropped."""
        rest, self._pending = self._pending, ""
        start = rest.find("[")
        if start >= 0 and _PARTIAL.fullmatch(rest[start:]):
            self.removed.append(rest[start:])
            return rest[:start].rstrip()
        return rest.rstrip()

    def _repair(self, marker: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", marker.group(1))]
        kept = [n for n in dict.fromkeys(numbers) if n in self._valid]
        if len(kept) < len(numbers):
            self.removed.append(marker.group(0))
        self.cited.extend(kept)
        return "".join(f"[{n}]" for n in kept)
