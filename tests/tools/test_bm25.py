"""Tests for the BM25 index: ranking, stemming, odd queries, k, persistence and a 200k corpus."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tools.bm25 import Bm25Index

TEXTS = [
    "The cat sat on the mat.",
    "Dogs are running in the park with other dogs.",
    "Quantum chromodynamics describes the strong interaction.",
    "A dog runs after a cat.",
    "Cooking pasta takes ten minutes in boiling water.",
]


@pytest.fixture(scope="module")
def index() -> Bm25Index:
    return Bm25Index.build(TEXTS)


def test_the_document_with_the_rare_word_ranks_first(index: Bm25Index) -> None:
    assert index.search("chromodynamics", 3)[0][0] == 2
    assert index.search("how long to cook pasta", 5)[0][0] == 4


def test_words_are_stemmed_and_stopwords_ignored(index: Bm25Index) -> None:
    # "running dog" stems to run + dog: both dog documents, the one with more dogs first.
    assert [position for position, _ in index.search("running dog", 5)] == [1, 3]
    assert index.search("the a on", 5) == []  # only stopwords


def test_scores_are_positive_and_descending_and_only_matches_come_back(index: Bm25Index) -> None:
    hits = index.search("cat dog", 10)
    assert {position for position, _ in hits} == {0, 1, 3}
    scores = [score for _, score in hits]
    assert all(s > 0 for s in scores) and scores == sorted(scores, reverse=True)


def test_equal_scores_come_in_corpus_order() -> None:
    index = Bm25Index.build(["alpha beta", "gamma", "alpha beta", "alpha beta"])
    hits = index.search("alpha", 10)
    assert [position for position, _ in hits] == [0, 2, 3]
    assert len({score for _, score in hits}) == 1


@pytest.mark.parametrize("k", [1, 2, 5, 1000])
def test_k_bounds_the_results_even_past_the_corpus_size(index: Bm25Index, k: int) -> None:
    everything = index.search("cat dog pasta", 1000)
    assert index.search("cat dog pasta", k) == everything[:k]


@pytest.mark.parametrize("query", ["", "   ", "?!.,", "zzzunknownword", "a"])
def test_queries_without_known_terms_find_nothing(index: Bm25Index, query: str) -> None:
    assert index.search(query, 5) == []


def test_k_of_zero_or_less_finds_nothing(index: Bm25Index) -> None:
    assert index.search("cat", 0) == [] and index.search("cat", -1) == []


def test_an_empty_corpus_is_refused() -> None:
    with pytest.raises(ValueError, match="no texts"):
        Bm25Index.build([])


def test_a_saved_index_loads_and_answers_the_same(index: Bm25Index, tmp_path: Path) -> None:
    index.save(tmp_path / "bm25")
    loaded = Bm25Index.load(tmp_path / "bm25")
    assert len(loaded) == len(index) == len(TEXTS)
    for query in ("cat", "running dogs", "boiling water pasta"):
        assert loaded.search(query, 5) == index.search(query, 5)


def test_loading_a_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no BM25 index"):
        Bm25Index.load(tmp_path / "nothing-here")


@pytest.mark.slow
def test_two_hundred_thousand_passages_build_and_answer_quickly() -> None:
    # Distinct texts (not copies), so the vocabulary and posting lists grow as in a real corpus.
    texts = [
        f"passage {i} about topic{i % 997} and subject{i % 89} with term{i}" for i in range(200_000)
    ]
    started = time.perf_counter()
    index = Bm25Index.build(texts)
    built = time.perf_counter() - started
    started = time.perf_counter()
    hits = index.search("term123456 topic5", 10)
    latency = time.perf_counter() - started
    assert hits[0][0] == 123456
    assert len(hits) == 10
    # Generous bounds (measured: ~10 s and ~1 ms on two shared cores): catch a quadratic path.
    assert built < 120 and latency < 0.5
