"""Retrieve's embeddings in Qdrant, against the in-memory matrix they replace.

Qdrant runs in its embedded mode (`:memory:` or a folder): the real qdrant-client, the same
calls a server gets, without the server, which cannot be started on the test machines (no
Docker, and no Qdrant binary on the package registries). Embeddings are the real MiniLM's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tools.embedder import Embedder
from tools.registry import ToolOptions, build_registry
from tools.retrieval import HybridIndex, Retrieve
from tools.vectors import COLLECTION_PREFIX, MatrixIndex, QdrantIndex, qdrant_client

QUERIES = ["sourdough starter", "chess opening", "doctor gave drugs for high blood pressure"]


@pytest.fixture
def qdrant():
    client = qdrant_client(":memory:")
    yield client
    client.close()


def test_qdrant_finds_what_the_matrix_finds(corpus: Path, tmp_path: Path, embedder, qdrant):
    here = HybridIndex.open(corpus, tmp_path / "here", embedder, max_words=20, overlap_words=5)
    there = HybridIndex.open(
        corpus, tmp_path / "there", embedder, max_words=20, overlap_words=5, qdrant=qdrant
    )
    assert isinstance(here.dense, MatrixIndex) and isinstance(there.dense, QdrantIndex)
    assert there.embeddings is None and not (tmp_path / "there" / "embeddings.npy").exists()
    for query in QUERIES:
        vector = embedder.embed([query])[0]
        mine, theirs = here.dense.nearest(vector, 5), there.dense.nearest(vector, 5)
        assert [i for i, _ in theirs] == [i for i, _ in mine], query
        assert [s for _, s in theirs] == pytest.approx([s for _, s in mine], abs=1e-5)
        hybrid = [h.position for h in there.search(query, 3)]
        assert hybrid == [h.position for h in here.search(query, 3)], query


def test_writing_a_collection_reports_its_progress_and_a_whole_one_reports_none(embedder, qdrant):
    texts = [f"passage number {i} about boilers" for i in range(5)]
    told: list[tuple[int, int]] = []
    QdrantIndex.ensure(qdrant, texts, embedder, lambda *p: told.append(p))
    assert told and told[-1] == (5, 5)
    told.clear()
    QdrantIndex.ensure(qdrant, texts, embedder, lambda *p: told.append(p))
    assert told == []  # already whole: nothing embedded


def test_a_second_replica_reuses_the_collection_and_embeds_nothing(
    corpus: Path, tmp_path: Path, embedder: Embedder, qdrant
):
    first = HybridIndex.open(corpus, tmp_path / "a", embedder, qdrant=qdrant)
    embedded = embedder.calls
    second = HybridIndex.open(corpus, tmp_path / "b", embedder, qdrant=qdrant)  # another folder
    assert embedder.calls == embedded
    assert isinstance(first.dense, QdrantIndex) and isinstance(second.dense, QdrantIndex)
    assert second.dense.collection == first.dense.collection
    assert second.dense.collection.startswith(COLLECTION_PREFIX)
    assert second.search("chess opening", 1)[0].passage.doc_id == "nested/chess.txt"

    # Reopening its own folder attaches to the collection, found whole.
    embedded = embedder.calls  # the query above was embedded
    HybridIndex.open(corpus, tmp_path / "a", embedder, qdrant=qdrant)
    assert embedder.calls == embedded


def test_changed_documents_make_a_new_collection_and_a_dropped_one_is_rebuilt(
    corpus: Path, tmp_path: Path, embedder: Embedder, qdrant
):
    before = HybridIndex.open(corpus, tmp_path / "i", embedder, qdrant=qdrant)
    (corpus / "penguins.txt").write_text("Penguins huddle together through the Antarctic winter.")
    after = HybridIndex.open(corpus, tmp_path / "i", embedder, qdrant=qdrant)
    assert isinstance(before.dense, QdrantIndex) and isinstance(after.dense, QdrantIndex)
    assert after.dense.collection != before.dense.collection
    assert after.search("penguins", 1)[0].passage.doc_id == "penguins.txt"

    qdrant.delete_collection(after.dense.collection)  # an operator cleaned up too eagerly
    embedded = embedder.calls
    again = HybridIndex.open(corpus, tmp_path / "i", embedder, qdrant=qdrant)
    assert embedder.calls > embedded and isinstance(again.dense, QdrantIndex)
    assert again.dense.is_whole()
    assert again.search("penguins", 1)[0].passage.doc_id == "penguins.txt"


def test_the_setting_puts_retrieves_embeddings_in_qdrant(corpus: Path, tmp_path: Path):
    # Embedded mode in a folder, as a single box might run it; the registry builds the client.
    options = ToolOptions(
        documents=corpus, index_dir=tmp_path / "index", qdrant_url=str(tmp_path / "qdrant")
    )
    (tool,) = build_registry(["Retrieve"], options).values()
    assert isinstance(tool, Retrieve) and tool.qdrant is not None
    try:
        hits = asyncio.run(tool.search("chess opening", 2))
        assert hits[0].passage.doc_id == "nested/chess.txt"
        assert isinstance(tool.prepare().dense, QdrantIndex)
        assert any(
            c.name.startswith(COLLECTION_PREFIX) for c in tool.qdrant.get_collections().collections
        )
    finally:
        tool.qdrant.close()
