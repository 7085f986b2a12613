"""Tests for the local search backend: one result per document, persistence, the Search tool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tools.documents import DocumentError
from tools.registry import ToolOptions, build_registry
from tools.search import Search, SearchBackend, SearchResult
from tools.search_local import LocalSearchBackend, snippet


def search(backend: LocalSearchBackend, query: str, max_results: int = 3) -> list[SearchResult]:
    return asyncio.run(backend.search(query, max_results))


def test_it_is_a_search_backend_without_pacing(corpus: Path) -> None:
    backend: SearchBackend = LocalSearchBackend(corpus)
    assert backend.name == "local"
    assert LocalSearchBackend.min_interval_s == 0.0


def test_the_best_document_comes_first_with_title_url_and_snippet(corpus: Path) -> None:
    (best, *_) = search(LocalSearchBackend(corpus), "sourdough starter yeast")
    assert best == SearchResult(
        "Sourdough baking",
        "doc://bread.md",
        # The snippet is the best-matching sentence and its neighbours, on one line.
        "# Sourdough baking A sourdough starter is a culture of wild yeast and lactic acid "
        "bacteria. Feed the starter with flour and water every day before baking the loaf.",
    )


def test_a_document_appears_once_by_its_best_passage(
    tmp_path: Path, make_jsonl: Callable[..., Path]
) -> None:
    filler = " ".join(f"filler{i}" for i in range(200))
    records = [
        # Two passages mention the comet, the second one twice: it is the snippet.
        {"doc_id": "long", "title": "Long", "text": f"comet once {filler} comet comet again"},
        {"doc_id": "short", "title": "Short", "text": "A comet passed by."},
        {"doc_id": "other", "title": "Other", "text": "Nothing to see."},
    ]
    backend = LocalSearchBackend(make_jsonl(tmp_path / "docs.jsonl", records), max_words=50)
    results = search(backend, "comet", 5)
    assert sorted(r.url for r in results) == ["doc://long", "doc://short"]
    (long,) = [r for r in results if r.url == "doc://long"]
    assert long.snippet.endswith("comet comet again") and "once" not in long.snippet


def test_max_results_bounds_the_documents(corpus: Path) -> None:
    backend = LocalSearchBackend(corpus)
    many = search(backend, "the most active volcano river chess opening pump", 10)
    assert len(many) >= 4 and len({r.url for r in many}) == len(many)
    assert search(backend, "the most active volcano river chess opening pump", 2) == many[:2]


@pytest.mark.parametrize("query", ["", "   ", "zzqx unknownword"])
def test_no_match_is_an_empty_list(corpus: Path, query: str) -> None:
    assert search(LocalSearchBackend(corpus), query) == []


def test_through_the_search_tool(corpus: Path) -> None:
    tool = Search(LocalSearchBackend(corpus), max_results=2)
    text = asyncio.run(tool('"Sicilian Defence"'))
    assert text.startswith("1. chess — The Sicilian Defence is a chess opening")
    assert text.splitlines()[0].endswith("(doc://nested/chess.txt)")


def test_a_persisted_index_is_reloaded_until_the_corpus_changes(
    corpus: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    LocalSearchBackend(corpus, index_dir=index_dir).prepare()
    saved = (index_dir / "passages.jsonl").stat().st_mtime_ns
    assert not (index_dir / "embeddings.npy").exists()  # BM25 only
    again = LocalSearchBackend(corpus, index_dir=index_dir)
    assert search(again, "Amazon river")[0].url == "doc://nested/deeper/rivers.md"
    assert (index_dir / "passages.jsonl").stat().st_mtime_ns == saved  # reloaded, not rewritten

    (corpus / "penguins.txt").write_text("Emperor penguins breed in the Antarctic winter.")
    changed = LocalSearchBackend(corpus, index_dir=index_dir)
    assert search(changed, "penguins")[0].url == "doc://penguins.txt"
    assert (index_dir / "passages.jsonl").stat().st_mtime_ns != saved


def test_a_missing_corpus_is_refused_and_an_unreadable_one_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        LocalSearchBackend(tmp_path / "nowhere")
    (tmp_path / "bad.pdf").write_bytes(b"not a pdf")
    backend = LocalSearchBackend(tmp_path / "bad.pdf")
    with pytest.raises(DocumentError, match="bad.pdf"):
        search(backend, "anything")


def test_the_registry_builds_a_local_search_from_its_options(corpus: Path) -> None:
    options = ToolOptions(search_backend="local", search_corpus=corpus)
    tool = build_registry(["Search"], options)["Search"]
    assert isinstance(tool, Search) and isinstance(tool.backend, LocalSearchBackend)
    assert "(doc://volcano.txt)" in asyncio.run(tool("Hekla eruption"))


def test_snippet_is_the_best_matching_sentence_widened_while_it_fits() -> None:
    text = (
        "Mount Everest is in Nepal. Jade Mountain is the tallest mountain in Taiwan. "
        "It rises 3,952 metres. Tourists like tea."
    )
    assert snippet(text, "tallest mountain Taiwan", 60) == (
        "Jade Mountain is the tallest mountain in Taiwan."
    )
    wide = snippet(text, "tallest mountain Taiwan", 100)
    assert wide.startswith("Jade Mountain is the tallest mountain in Taiwan. It rises")
    assert len(wide) <= 100


def test_snippet_of_one_long_sentence_is_the_window_around_the_query_words() -> None:
    words = " ".join(f"w{i}" for i in range(300))
    shown = snippet(f"{words} the comet returns {words}", "comet", 60)
    assert "the comet returns" in shown
    assert shown.startswith("…") and shown.endswith("…")
    assert len(shown) <= 60
