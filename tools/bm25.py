"""BM25 over a list of texts, via bm25s: English stemming (PyStemmer) and bm25s's stopwords.

bm25s precomputes every (term, document) score into a sparse matrix when it indexes, so a query
is a sum of a few of its columns. Its `retrieve` is built for batches of queries (progress bars,
a dense top-k over every document, `k` no larger than the corpus); a tool asks one query at a
time, so `search` scores the query's term ids directly and keeps only documents that share a
term with it: `k` may exceed the corpus, and a query with no known term finds nothing.

Left out: other languages, phrase and field queries, and adding texts to a built index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import Stemmer

LANGUAGE = "english"  # PyStemmer's Snowball stemmer
STOPWORDS = "en"  # bm25s's short English list (Lucene's 33 words)
_META = "tokenizer.json"


class Bm25Index:
    """Lucene-variant BM25 (k1 1.5, b 0.75) over texts; results are positions in that list."""

    def __init__(self, retriever: Any) -> None:
        self._retriever = retriever
        self._size = int(retriever.scores["num_docs"])

    @classmethod
    def build(cls, texts: Sequence[str]) -> Bm25Index:
        if not texts:
            raise ValueError("no texts to index")
        tokens = _tokenize(list(texts), ids=True)
        retriever = _bm25s().BM25()
        retriever.index(tokens, show_progress=False)
        return cls(retriever)

    def __len__(self) -> int:
        return self._size

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Up to `k` (position, score) pairs, best first; only texts sharing a term with `query`."""
        if k <= 0:
            return []
        ids = self._retriever.get_tokens_ids(_tokenize([query], ids=False)[0])
        if not ids:
            return []
        scores = self._retriever.get_scores_from_ids(ids)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            # argpartition: linear time, where a full sort of a big match set is not.
            matched = matched[np.argpartition(-scores[matched], k - 1)[:k]]
        # Best first; equal scores in corpus order, so results are reproducible.
        order = np.lexsort((matched, -scores[matched]))
        return [(int(matched[i]), float(scores[matched[i]])) for i in order]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory), show_progress=False)
        meta = {"language": LANGUAGE, "stopwords": STOPWORDS, "bm25s": _bm25s().__version__}
        (directory / _META).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> Bm25Index:
        """The index `save` wrote; `ValueError` if it is missing or was tokenized differently."""
        try:
            meta = json.loads((directory / _META).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"no BM25 index in {directory}") from exc
        if (meta.get("language"), meta.get("stopwords")) != (LANGUAGE, STOPWORDS):
            raise ValueError(f"the BM25 index in {directory} was tokenized differently")
        return cls(_bm25s().BM25.load(str(directory), show_progress=False))


def _bm25s() -> Any:
    """The bm25s module, imported at the first index built or loaded: with scipy it takes 0.3 s,
    which a process that never searches (`agent-server ask` on arithmetic) should not pay."""
    import bm25s

    return bm25s


def _tokenize(texts: list[str], *, ids: bool) -> Any:
    # One tokenizer for documents and queries: a query term must stem as its documents did.
    # A stemmer per call, because PyStemmer's are not thread-safe (and cost under a microsecond).
    stemmer = Stemmer.Stemmer(LANGUAGE)
    return _bm25s().tokenize(
        texts, stopwords=STOPWORDS, stemmer=stemmer, return_ids=ids, show_progress=False
    )
