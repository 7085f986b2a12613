"""Hybrid retrieval over a user's documents, and the Retrieve tool: `[Retrieve("query")]`.

Two rankings of the same passages are fused: BM25 finds the rare exact words (names, numbers,
codes), the MiniLM embedding finds paraphrases. Each contributes its top `DEPTH` candidates.

- `hybrid` (the default): a convex combination of scores, `ALPHA * bm25 + (1 - ALPHA) * dense`,
  each min-max normalised over its own candidates (0 for a passage the ranking did not list),
  as in Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval" (TOIS 2023).
- `rrf`: reciprocal rank fusion (Cormack et al., 2009), the sum of 1 / (60 + rank) with the
  paper's k = 60. Kept for comparison: it throws away how far ahead a ranking's first hit is,
  so where one ranking is much weaker it drags the other's sure hits down. On SQuAD (where the
  questions reuse their paragraph's words and MiniLM trails BM25 by 16 points at recall@1) it
  fell below BM25 alone at recall@1 for every chunking, k and depth tried; see
  benchmarks/recall.py for the figures and for how ALPHA was chosen.

An index lives in a folder: `passages.jsonl`, `bm25/`, `embeddings.npy` and, written last,
`manifest.json` with a fingerprint of the corpus files (path, size, mtime), the chunking and the
embedder. `HybridIndex.open` reloads when the manifest matches and rebuilds otherwise. Given a
Qdrant client, the embeddings live in a collection there instead (`vectors.py`), which replicas
with the same documents share.

Building is CPU-heavy (50 s for SQuAD's 2,067 paragraphs, 3,088 passages, on two cores; a reload
takes 25 ms), so the tool never builds on the event loop: `Retrieve.start()` begins a build in a
background thread (the service may call it at start-up), `prepare()` waits for it, and a call
that finds no index yet starts the build and waits for it up to `wait_s` before saying, as a
tool error, that indexing goes on.

Left out: updating an index in place (any change to the corpus rebuilds it all), noticing a
change while the service runs (the index is opened once per process), several processes sharing
one index folder, and re-ranking with a cross-encoder.

Long (over 300 lines) because the hybrid index (build, save, load, fuse) and the tool that waits
for it in the background change together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import numpy as np

from tools.base import MAX_RESULT_CHARS, NoWarmUp, ToolError
from tools.bm25 import Bm25Index
from tools.documents import (
    DocumentError,
    EmptyCorpus,
    Passage,
    Skipped,
    corpus_fingerprint,
    iter_corpus_files,
    load_documents,
    load_passages,
    save_passages,
    split_passages,
)
from tools.embedder import Embedder, Progress, Vectors
from tools.search import SearchResult, clean_query, format_results
from tools.vectors import DenseIndex, MatrixIndex, QdrantIndex

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

Mode = Literal["hybrid", "rrf", "bm25", "dense"]
MODES: tuple[Mode, ...] = ("bm25", "dense", "rrf", "hybrid")
# BM25's weight. Chosen on half of the SQuAD dev questions (split by id hash) from 0.5-0.8 and
# checked on the other half; 0.6-0.8 all did about as well. Not a universal constant: where the
# embedding is the stronger ranking, it should be lower.
ALPHA = 0.6
RRF_K = 60
DEPTH = 100  # candidates per ranking: enough for recall@10 of documents with several passages
FORMAT = 1  # bump when the folder layout changes, so old indexes are rebuilt
T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float  # BM25 score, cosine similarity or fused score, by mode
    position: int  # in `HybridIndex.passages`


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = RRF_K
) -> list[tuple[int, float]]:
    """(item, score) best first; ties in item order, so results are reproducible."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def convex_combination(
    lexical: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]], alpha: float = ALPHA
) -> list[tuple[int, float]]:
    """(item, alpha * lexical + (1 - alpha) * dense) best first, scores min-max normalised."""
    first, second = _normalised(lexical), _normalised(dense)
    both = first.keys() | second.keys()
    scores = {i: alpha * first.get(i, 0.0) + (1 - alpha) * second.get(i, 0.0) for i in both}
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def _normalised(ranking: Sequence[tuple[int, float]]) -> dict[int, float]:
    if not ranking:
        return {}
    low, high = min(s for _, s in ranking), max(s for _, s in ranking)
    if high == low:  # one candidate, or all tied: each is as good as the best
        return {i: 1.0 for i, _ in ranking}
    return {i: (s - low) / (high - low) for i, s in ranking}


class HybridIndex:
    """Passages searchable by BM25, by embedding, or by both fused.

    Without an embedder it is a BM25 index only (the local Search backend's), and the modes
    `dense` and `hybrid` are a `ValueError`.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        bm25: Bm25Index,
        embeddings: Vectors | DenseIndex | None,  # an array is kept in memory (`MatrixIndex`)
        embedder: Embedder | None,
        skipped: Sequence[Skipped] = (),
    ) -> None:
        dense = MatrixIndex(embeddings) if isinstance(embeddings, np.ndarray) else embeddings
        if len(passages) != len(bm25) or (dense is not None and len(dense) != len(bm25)):
            raise ValueError("passages, BM25 index and embeddings differ in length")
        if (dense is None) != (embedder is None):
            raise ValueError("embeddings and their embedder come together")
        self.passages = list(passages)
        self.bm25 = bm25
        self.dense = dense
        self.embedder = embedder
        self.skipped = tuple(skipped)

    @property
    def embeddings(self) -> Vectors | None:
        """The embeddings when they are kept here (not in Qdrant)."""
        return self.dense.embeddings if isinstance(self.dense, MatrixIndex) else None

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        embedder: Embedder | None,
        skipped: Sequence[Skipped] = (),
        *,
        qdrant: QdrantClient | None = None,  # where the embeddings go; None: here
        progress: Progress | None = None,  # passages embedded so far, of all
    ) -> HybridIndex:
        texts = [p.search_text for p in passages]
        dense: DenseIndex | None = None
        if embedder is not None and qdrant is not None:
            dense = QdrantIndex.ensure(qdrant, texts, embedder, progress)
        elif embedder is not None:
            dense = MatrixIndex(embedder.embed(texts, progress))
        return cls(passages, Bm25Index.build(texts), dense, embedder, skipped)

    @classmethod
    def from_corpus(
        cls,
        corpus: Path,
        embedder: Embedder | None,
        *,
        max_words: int = 120,
        overlap_words: int = 30,
        qdrant: QdrantClient | None = None,
        progress: Progress | None = None,
    ) -> HybridIndex:
        """An index of `corpus` built now, in memory (its embeddings in Qdrant if given)."""
        loaded = load_documents(corpus)
        passages = split_passages(loaded.documents, max_words, overlap_words)
        return cls.build(passages, embedder, loaded.skipped, qdrant=qdrant, progress=progress)

    @classmethod
    def open(
        cls,
        corpus: Path,
        index_dir: Path,
        embedder: Embedder | None,
        *,
        max_words: int = 120,
        overlap_words: int = 30,
        qdrant: QdrantClient | None = None,
        progress: Progress | None = None,  # told only when it is rebuilt
    ) -> HybridIndex:
        """The index of `corpus` kept in `index_dir`: reloaded if still current, else rebuilt.

        With `qdrant`, the embeddings are in a collection there and `index_dir` names it.
        """
        manifest = {
            "format": FORMAT,
            "corpus": str(corpus.resolve()),
            "fingerprint": corpus_fingerprint(corpus),
            "max_words": max_words,
            "overlap_words": overlap_words,
            "embedder": embedder.name if embedder is not None else None,
            "vectors": "qdrant" if qdrant is not None and embedder is not None else "here",
        }
        index = cls._reload(index_dir, manifest, embedder, qdrant)
        if index is None:
            index = cls.from_corpus(
                corpus,
                embedder,
                max_words=max_words,
                overlap_words=overlap_words,
                qdrant=qdrant,
                progress=progress,
            )
            index.save(index_dir, manifest)
        return index

    def save(self, index_dir: Path, manifest: dict[str, object]) -> None:
        index_dir.mkdir(parents=True, exist_ok=True)
        # The manifest goes first and comes back last: a half-written folder is never current.
        (index_dir / "manifest.json").unlink(missing_ok=True)
        save_passages(self.passages, index_dir / "passages.jsonl")
        self.bm25.save(index_dir / "bm25")
        if self.embeddings is not None:
            np.save(index_dir / "embeddings.npy", self.embeddings)
        if isinstance(self.dense, QdrantIndex):
            manifest = {**manifest, "collection": self.dense.collection}
        skipped = [[s.source, s.reason] for s in self.skipped]
        partial = index_dir / f"manifest.json.{os.getpid()}"
        partial.write_text(json.dumps({**manifest, "skipped": skipped}, indent=1))
        partial.replace(index_dir / "manifest.json")

    @classmethod
    def _reload(
        cls,
        index_dir: Path,
        manifest: dict[str, object],
        embedder: Embedder | None,
        qdrant: QdrantClient | None,
    ) -> HybridIndex | None:
        try:
            saved = json.loads((index_dir / "manifest.json").read_text())
            if {key: saved.get(key) for key in manifest} != manifest:
                return None
            passages = load_passages(index_dir / "passages.jsonl")
            bm25 = Bm25Index.load(index_dir / "bm25")
            dense: DenseIndex | None = None
            if embedder is not None and qdrant is not None:
                dense = QdrantIndex(qdrant, saved["collection"], len(passages))
                if not dense.is_whole():  # dropped on the server, or never finished
                    return None
            elif embedder is not None:
                dense = MatrixIndex(np.load(index_dir / "embeddings.npy"))
            skipped = [Skipped(source, reason) for source, reason in saved.get("skipped", [])]
            return cls(passages, bm25, dense, embedder, skipped)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:  # damaged
            logger.warning("rebuilding the index in %s: %s", index_dir, exc)
            return None

    def search(
        self,
        query: str,
        k: int = 3,
        mode: Mode = "hybrid",
        *,
        per_document: bool = False,  # the best passage of each of k documents
        min_similarity: float = -1.0,  # dense candidates below this cosine are dropped
    ) -> list[Hit]:
        """The k best passages for `query`, best first; [] for a query without content."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if mode != "bm25" and self.embedder is None:
            raise ValueError(f"mode {mode!r} needs an index built with an embedder")
        if k <= 0 or not query.strip():
            return []
        vector = self.embedder.embed([query])[0] if self.embedder and mode != "bm25" else None
        depth = k * 4 if per_document else k
        while True:
            ranked = self._ranking(query, vector, mode, depth, min_similarity)
            hits = _best_per_document(ranked, self.passages) if per_document else ranked
            if len(hits) >= k or len(ranked) < depth or depth >= len(self.passages):
                return [Hit(self.passages[i], score, i) for i, score in hits[:k]]
            depth *= 2

    def _ranking(
        self, query: str, vector: Vectors | None, mode: Mode, depth: int, min_similarity: float
    ) -> list[tuple[int, float]]:
        if mode == "bm25":
            return self.bm25.search(query, depth)
        assert vector is not None
        assert self.dense is not None
        dense = self.dense.nearest(vector, depth if mode == "dense" else max(depth, DEPTH))
        dense = [(i, s) for i, s in dense if s >= min_similarity]
        if mode == "dense":
            return dense
        lexical = self.bm25.search(query, max(depth, DEPTH))
        if mode == "rrf":
            return reciprocal_rank_fusion([[i for i, _ in lexical], [i for i, _ in dense]])[:depth]
        return convex_combination(lexical, dense)[:depth]


def _best_per_document(
    ranked: list[tuple[int, float]], passages: Sequence[Passage]
) -> list[tuple[int, float]]:
    seen: set[str] = set()
    best = []
    for position, score in ranked:
        if passages[position].doc_id not in seen:
            seen.add(passages[position].doc_id)
            best.append((position, score))
    return best


class Background(Generic[T]):
    """A value built once in a daemon thread (a daemon, so an exit need not wait for it)."""

    def __init__(self, build: Callable[[], T], name: str) -> None:
        self._build = build
        self._name = name
        self._lock = threading.Lock()
        self._future: Future[T] | None = None

    def start(self) -> Future[T]:
        """The build's future, starting the build unless it is done or going (or failed: retry)."""
        with self._lock:
            future = self._future
            if future is None or (future.done() and future.exception() is not None):
                future = self._future = Future()
                # Running from the start, so a waiter that gives up (its wrapper is cancelled,
                # and cancels this in turn) cannot cancel the build for everyone else.
                future.set_running_or_notify_cancel()
                thread = threading.Thread(target=self._run, args=(future,), daemon=True)
                thread.name = self._name
                thread.start()
            return future

    def result(self) -> T:
        return self.start().result()

    def peek(self) -> Future[T] | None:
        """The build's future, if it was ever started; never starts one."""
        with self._lock:
            return self._future

    async def wait(self, timeout_s: float) -> T:
        """The value; `TimeoutError` after `timeout_s`, while the build goes on."""
        return await asyncio.wait_for(asyncio.wrap_future(self.start()), timeout_s)

    def _run(self, future: Future[T]) -> None:
        try:
            future.set_result(self._build())
        except BaseException as exc:  # handed to every waiter, never lost with the thread
            logger.error("%s failed: %s", self._name, exc)
            future.set_exception(exc)


class IndexNotReady(ToolError):
    """The index is still being built; the caller may try again shortly."""


@dataclass(frozen=True)
class IndexState:
    """What Retrieve's current index holds, for the documents list (`Retrieve.state`)."""

    building: bool  # an index is being loaded or built now
    documents: frozenset[str] = frozenset()  # the ids of the documents it searches
    skipped: Mapping[str, str] = field(default_factory=dict)  # id: why it could not be read
    error: str | None = None  # the last build failed (e.g. no document could be read)
    # While building: passages embedded so far, of how many (None before embedding starts,
    # and for a reload, which embeds nothing).
    progress: tuple[int, int] | None = None


class BuildProgress:
    """How far one index build's embedding is: written by the build's thread, read by `state`
    (a tuple is replaced whole, so a reader never sees half an update)."""

    def __init__(self) -> None:
        self.passages: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        self.passages = (done, total)


class Retrieve(NoWarmUp):
    """The best passages from the user's documents, each with its document's title and id."""

    name = "Retrieve"
    description = "Finds the passages of the user's own documents that best match a query."
    example = '"warranty period for the pump"'
    parameters = None  # a free-text argument

    def __init__(
        self,
        documents: Path,
        index_dir: Path,
        *,
        embedder: Embedder | None = None,
        results: int = 3,  # as for Search: three passages a small model can read at once
        wait_s: float = 8.0,  # under the engine's 10 s call limit, so the model reads why
        # Dense candidates below this cosine are not results. On SQuAD every question's best
        # passage scored >= 0.30 (median 0.62) and gibberish or off-topic queries 0.16-0.29.
        min_similarity: float = 0.3,
        max_chars: int = MAX_RESULT_CHARS,
        max_query_chars: int = 300,
        index: HybridIndex | None = None,  # already built (e.g. by a benchmark): used as is
        qdrant: QdrantClient | None = None,  # the embeddings' home; None: the index folder
    ) -> None:
        if not documents.exists():
            raise ValueError(f"Retrieve's documents do not exist: {documents}")
        self.documents = documents
        # One folder per corpus, so switching between corpora does not rebuild each time.
        digest = hashlib.sha256(str(documents.resolve()).encode()).hexdigest()[:12]
        self.index_dir = index_dir / f"retrieve-{digest}"
        self.embedder = embedder if embedder is not None else Embedder()
        self.results = results
        self.wait_s = wait_s
        self.min_similarity = min_similarity
        self.max_chars = max_chars
        self.max_query_chars = max_query_chars
        self.qdrant = qdrant
        self._new_build(index)

    def offered(self) -> bool:
        """Only once there are documents: an empty folder (the default one, before the first
        upload) would have the model search nothing."""
        try:  # asked for every answer: stops at the first document
            return next(iter_corpus_files(self.documents), None) is not None
        except DocumentError:  # the folder was removed under us
            return False

    def start(self) -> None:
        """Begin loading or building the index in the background; returns at once. Nothing to
        do yet with no documents (the first upload's `refresh` starts it)."""
        if self.offered():
            self._index.start()

    def prepare(self) -> HybridIndex:
        """The index, loaded or built now (blocking); raises what building raised."""
        return self._index.result()

    def refresh(self) -> None:
        """The documents changed: reopen the index in the background (rebuilt if it differs).

        Calls meanwhile wait for the new index, as on first use.
        """
        self._new_build()
        self._index.start()

    def state(self) -> IndexState:
        """The current index's documents, at once: never waits for a build."""
        future = self._index.peek()
        if future is None:
            return IndexState(building=False)  # nothing to index yet
        if not future.done():
            return IndexState(building=True, progress=self._progress.passages)
        error = future.exception()
        if isinstance(error, EmptyCorpus):
            return IndexState(building=False)
        if error is not None:
            return IndexState(building=False, error=str(error))
        index = future.result()
        documents = frozenset(p.doc_id for p in index.passages)
        skipped = {self._doc_id(s.source): s.reason for s in index.skipped}
        return IndexState(building=False, documents=documents, skipped=skipped)

    def _doc_id(self, source: str) -> str:
        path = Path(source)
        return (
            path.relative_to(self.documents).as_posix()
            if path.is_relative_to(self.documents)
            else source
        )

    async def __call__(self, argument: str) -> str:
        query = _query(argument, self.max_query_chars)
        hits = await self.search(query, self.results)
        if not hits:
            raise ToolError(f'nothing in the documents matches "{query}"')
        results = [
            SearchResult(h.passage.title, f"doc://{h.passage.doc_id}", h.passage.text) for h in hits
        ]
        return format_results(results, self.max_chars)

    async def search(self, query: str, k: int) -> list[Hit]:
        """The `k` best passages for `query` (none below `min_similarity` by meaning alone).

        `IndexNotReady` while the index is still being built after `wait_s`.
        """
        try:
            index = await self._index.wait(self.wait_s)
        except TimeoutError:
            raise IndexNotReady(
                "the documents are still being indexed; try again shortly"
            ) from None
        except EmptyCorpus:  # every document deleted, or none uploaded yet
            return []
        return await asyncio.to_thread(index.search, query, k, min_similarity=self.min_similarity)

    def _new_build(self, index: HybridIndex | None = None) -> None:
        """The next index (`index` itself if given), to be built in the background once
        started. Each build has its own progress: an older one may still be running."""
        progress = self._progress = BuildProgress()

        def build() -> HybridIndex:
            if index is not None:
                return index
            return HybridIndex.open(
                self.documents, self.index_dir, self.embedder, qdrant=self.qdrant, progress=progress
            )

        self._index = Background(build, f"Retrieve index of {self.documents}")


def _query(argument: str, max_chars: int) -> str:
    # The engine passes `Call.argument`, already unquoted when it is one string literal; what
    # still arrives quoted (`'don't'`, typographic quotes) is Search's problem too, so its
    # helper strips it. Its messages give a Search example; the model should read its own call.
    try:
        return clean_query(argument, max_chars)
    except ToolError as exc:
        raise ToolError(str(exc).replace("Search(", "Retrieve(")) from exc
