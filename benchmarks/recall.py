"""Retrieval recall@k of BM25, dense (MiniLM), RRF and hybrid search, and what indexing costs.

Data: SQuAD v1.1 dev (Rajpurkar et al., 2016; CC BY-SA 4.0), as copied into data/ (data/README.md):
the 2,067 paragraphs of its 48 articles are the corpus and 150 sampled dev questions the
queries. A question is a hit at k when one of its gold paragraphs is among the top k distinct
documents (paragraphs), whichever of their passages matched.

The hybrid's BM25 weight (`tools.retrieval.ALPHA`) was chosen on the tuning half of the
questions (`half(id) == "A"`, a hash of the question id) and checked on the held-out half B;
the table is printed for all questions and for each half, so the choice can be re-checked.

    python benchmarks/recall.py [--index-dir DIR] [--passages 200000]

`--passages N` also times the local Search backend (BM25 only) on the corpus repeated to about
N passages, doc ids suffixed: embedding 200,000 passages would take hours on a laptop CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from agent_server.evals.recall import Question, load_questions, recall_at_k
from tools.documents import load_documents, split_passages
from tools.embedder import Embedder
from tools.retrieval import MODES, HybridIndex, Mode
from tools.search_local import LocalSearchBackend

DATA = Path(__file__).resolve().parents[1] / "data"


def half(question_id: str) -> str:
    """ "A" (tuning) or "B" (held out), fixed by the id alone."""
    return "AB"[int(hashlib.sha256(question_id.encode()).hexdigest(), 16) % 2]


def recall_table(
    corpus: Path,
    questions: Path | Sequence[Question],
    ks: Sequence[int] = (1, 5, 10),
    *,
    index_dir: Path | None = None,
    embedder: Embedder | None = None,
) -> dict[Mode, dict[int, float]]:
    """Recall@k per mode; the index is kept in `index_dir` (a temporary folder if None)."""
    embedder = embedder or Embedder()
    with tempfile.TemporaryDirectory() as scratch:
        index = HybridIndex.open(corpus, index_dir or Path(scratch), embedder)
    asked = load_questions(questions) if isinstance(questions, Path) else questions
    return {mode: recall_at_k(index, asked, mode, ks) for mode in MODES}


def markdown(table: dict[Mode, dict[int, float]]) -> str:
    ks = list(next(iter(table.values())))
    lines = ["| ranking | " + " | ".join(f"recall@{k}" for k in ks) + " |"]
    lines.append("|---|" + "---:|" * len(ks))
    for mode, row in table.items():
        lines.append(f"| {mode} | " + " | ".join(f"{row[k]:.3f}" for k in ks) + " |")
    return "\n".join(lines)


def time_indexing(corpus: Path, index_dir: Path, embedder: Embedder) -> None:
    """Build (embedding included) and reload times of the hybrid index, printed."""
    started = time.perf_counter()
    index = HybridIndex.open(corpus, index_dir, embedder)
    built = time.perf_counter() - started
    started = time.perf_counter()
    HybridIndex.open(corpus, index_dir, embedder)
    reloaded = time.perf_counter() - started
    print(f"- hybrid index of {len(index.passages):,} passages: opened in {built:.1f} s")
    print(f"  ({embedder.calls:,} texts embedded); opened again (reloaded) in {reloaded:.3f} s")


def time_local_search(corpus: Path, passages: int, queries: Sequence[str]) -> None:
    """The local Search backend (BM25 only) on the corpus repeated to about `passages`."""
    documents = load_documents(corpus).documents
    copies = max(1, -(-passages // len(split_passages(documents))))
    with tempfile.TemporaryDirectory() as scratch:
        repeated = Path(scratch, "corpus.jsonl")
        with repeated.open("w", encoding="utf-8") as handle:
            for n in range(copies):
                for doc in documents:
                    record = {"doc_id": f"{doc.doc_id}~{n}", "title": doc.title, "text": doc.text}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        index_dir = Path(scratch, "index")
        started = time.perf_counter()
        index = LocalSearchBackend(repeated, index_dir=index_dir).prepare()
        built = time.perf_counter() - started
        started = time.perf_counter()
        LocalSearchBackend(repeated, index_dir=index_dir).prepare()
        reloaded = time.perf_counter() - started
    timings: dict[str, list[float]] = {"passages": [], "documents": []}
    for query in queries:
        for kind in timings:
            started = time.perf_counter()
            index.search(query, 10, "bm25", per_document=kind == "documents")
            timings[kind].append(time.perf_counter() - started)
    size = f"{len(index.passages):,} passages ({len(documents) * copies:,} documents)"
    print(f"- local search over {size}:")
    print(f"  read, split, indexed and saved in {built:.1f} s; reloaded in {reloaded:.2f} s")
    for kind, seconds in timings.items():
        median, slowest = statistics.median(seconds) * 1000, max(seconds) * 1000
        print(f"  a query for the top 10 {kind}: {median:.2f} ms median, {slowest:.2f} ms slowest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DATA / "squad_passages.jsonl")
    parser.add_argument("--questions", type=Path, default=DATA / "squad_questions_dev.jsonl")
    parser.add_argument("--index-dir", type=Path, help="keep the index here (default: temporary)")
    parser.add_argument("--passages", type=int, default=0, help="also time BM25 at this size")
    args = parser.parse_args()

    embedder = Embedder()
    questions = load_questions(args.questions)
    queries = [q.question for q in questions]
    with tempfile.TemporaryDirectory() as scratch:
        index_dir = args.index_dir or Path(scratch)
        time_indexing(args.corpus, index_dir, embedder)
        index = HybridIndex.open(args.corpus, index_dir, embedder)
    time_local_search(args.corpus, 0, queries)
    if args.passages:
        time_local_search(args.corpus, args.passages, queries)
    subsets = {
        "all": questions,
        "tuning half A": [q for q in questions if half(q.id) == "A"],
        "held-out half B": [q for q in questions if half(q.id) == "B"],
    }
    for name, subset in subsets.items():
        table = {mode: recall_at_k(index, subset, mode, (1, 5, 10)) for mode in MODES}
        print(f"\nRecall on SQuAD v1.1 dev, {name} ({len(subset)} questions):\n")
        print(markdown(table))


if __name__ == "__main__":
    main()
