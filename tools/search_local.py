"""A `SearchBackend` over a local corpus: BM25, offline, one result per document.

The corpus is read like Retrieve's documents (`tools.documents`: a JSONL file, a document file or
a folder) and cut into the same passages; BM25 ranks the passages and each document is shown
once, by its best passage, as `doc://<doc_id>`. It is a `HybridIndex` without its embedder, so
search and retrieval share loading, chunking and persistence.

The index is built in memory (2,000 passages take a fraction of a second) or, with `index_dir`,
kept on disk and rebuilt only when the corpus changes (for big corpora: 200,000 passages take
tens of seconds to index). Either way it is built in a background thread, never on the event
loop; the first search waits for it up to `wait_s`.

A result's snippet is not the whole passage: like a web engine's, it is the passage's sentence
that shares the most (stemmed) words with the query, with its neighbours while they fit in
`snippet_chars`. A small model reads three short, on-topic snippets far better than three
120-word passages, and the prompt stays short.

Left out: dense ranking (Retrieve does that) and queries with operators.
"""

from __future__ import annotations

import asyncio
import re
from functools import cache
from pathlib import Path

import Stemmer

from tools.base import NoWarmUp
from tools.retrieval import Background, HybridIndex
from tools.search import SearchError, SearchResult


class LocalSearchBackend(NoWarmUp):
    """Search over the documents at `corpus`; results are `doc://<doc_id>`."""

    name = "local"
    min_interval_s = 0.0  # nobody to be polite to: no pacing between queries

    def __init__(
        self,
        corpus: Path,
        *,
        index_dir: Path | None = None,
        wait_s: float = 8.0,  # under the engine's 10 s call limit, so the model reads why
        max_words: int = 120,
        overlap_words: int = 30,
        snippet_chars: int = 240,  # about a web engine's snippet
    ) -> None:
        if not corpus.exists():
            raise ValueError(f"the search corpus does not exist: {corpus}")
        self.corpus = corpus
        self.index_dir = index_dir
        self.wait_s = wait_s
        self.max_words = max_words
        self.overlap_words = overlap_words
        self.snippet_chars = snippet_chars
        self._index = Background(self._open, f"local search index of {corpus}")

    def start(self) -> None:
        """Begin loading or building the index in the background; returns at once."""
        self._index.start()

    def prepare(self) -> HybridIndex:
        """The index, loaded or built now (blocking); raises what building raised."""
        return self._index.result()

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        try:
            index = await self._index.wait(self.wait_s)
        except TimeoutError:
            raise SearchError(
                "the local corpus is still being indexed; try again shortly"
            ) from None
        hits = await asyncio.to_thread(index.search, query, max_results, "bm25", per_document=True)
        return [
            SearchResult(
                h.passage.title,
                f"doc://{h.passage.doc_id}",
                snippet(h.passage.text, query, self.snippet_chars),
            )
            for h in hits
        ]

    async def document(self, url: str) -> tuple[str, str]:
        """The title and whole text of the document a result's `doc://<doc_id>` names."""
        doc_id = url.removeprefix("doc://")
        index = await self._index.wait(self.wait_s)
        passages = sorted(
            (p for p in index.passages if p.doc_id == doc_id and url.startswith("doc://")),
            key=lambda p: p.start,
        )
        if not passages:
            raise SearchError(f"no document {url} in the local corpus")
        text = ""
        for passage in passages:  # overlapping slices of one text: lay each at its offset
            text = text[: passage.start].ljust(passage.start) + passage.text
        return passages[0].title, text

    def _open(self) -> HybridIndex:
        words, overlap = self.max_words, self.overlap_words
        if self.index_dir is None:
            return HybridIndex.from_corpus(
                self.corpus, None, max_words=words, overlap_words=overlap
            )
        return HybridIndex.open(
            self.corpus, self.index_dir, None, max_words=words, overlap_words=overlap
        )


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"\w+")


@cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def _stems(text: str) -> set[str]:
    return set(_stemmer().stemWords(_WORD.findall(text.lower())))


def snippet(text: str, query: str, max_chars: int) -> str:
    """The sentence of `text` sharing most words with `query`, widened while it fits."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    sentences = [s for line in lines if line for s in _SENTENCE_END.split(line)]
    wanted = _stems(query)
    scores = [len(wanted & _stems(s)) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    if len(sentences[best]) > max_chars:
        return _window(sentences[best], wanted, max_chars)
    start, end = best, best + 1
    length = len(sentences[best])
    while True:  # grow towards the better-matching neighbour first
        options = [i for i in (end, start - 1) if 0 <= i < len(sentences)]
        options = [i for i in options if length + 1 + len(sentences[i]) <= max_chars]
        if not options:
            return " ".join(sentences[start:end])
        pick = max(options, key=lambda i: scores[i])
        length += 1 + len(sentences[pick])
        start, end = min(start, pick), max(end, pick + 1)


def _window(sentence: str, wanted: set[str], max_chars: int) -> str:
    """The run of words of a too-long sentence that fits, holds the most query words, and
    starts a few words before the first of them (so the match reads in context)."""
    words = sentence.split(" ")
    hits = [bool(_stems(w) & wanted) for w in words]
    best: tuple[int, int, int, int] = (-1, 0, 0, 0)  # (hits, -distance from lead-in, start, end)
    for start in range(len(words)):
        length, end = -1, start
        while end < len(words) and length + 1 + len(words[end]) <= max_chars - 2:
            length += 1 + len(words[end])
            end += 1
        first = next((i for i in range(start, end) if hits[i]), end)
        best = max(best, (sum(hits[start:end]), -abs(first - start - 3), -start, end))
    start, end = -best[2], best[3]
    shown = " ".join(words[start:end])[: max_chars - 2]
    return ("…" if start > 0 else "") + shown + ("…" if end < len(words) else "")
