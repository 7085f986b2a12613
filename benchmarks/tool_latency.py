"""Tool latency (p50/p99) and retrieval recall@k, printed as Markdown tables for the README.

Every figure is one call through `tools.base.invoke`, the path the engine takes, so it includes
argument checks, the time limit and output formatting:

- Calculator: warm worker, varied expressions;
- Python: cold (no spare process: start, imports, run) and warm (a spare was ready);
- Search (local BM25 backend) and Retrieve (hybrid BM25 + MiniLM) over the 2,067 SQuAD
  paragraphs and over the same corpus repeated 100 times (~200,000 documents), one query per
  SQuAD dev question, cache off; plus Search's cache hit;
- recall@1/5/10 of BM25, dense, RRF and hybrid ranking on the SQuAD dev questions.

At 200k, Retrieve's embeddings are the 2k corpus's tiled 100 times: embedding 200k passages would
take about an hour here, and a query's cost (one matrix-vector product over 200k rows plus BM25)
is the same whatever the rows hold. The live-web backend (ddgs) is left out: its latency is the
network's; only its cache hit, shared with local search, is ours.

    python benchmarks/tool_latency.py [--queries 150] [--scale 100]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this script sees its own folder on sys.path, not the repository root that
# holds the `benchmarks` package it shares code with.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.recall import DATA, load_questions, markdown, recall_at_k  # noqa: E402
from tools.base import Tool, invoke  # noqa: E402
from tools.bm25 import Bm25Index  # noqa: E402
from tools.calculator import Calculator  # noqa: E402
from tools.embedder import Embedder  # noqa: E402
from tools.python_sandbox import PythonSandbox  # noqa: E402
from tools.retrieval import MODES, HybridIndex, Retrieve  # noqa: E402
from tools.search import Search  # noqa: E402
from tools.search_local import LocalSearchBackend  # noqa: E402

CORPUS = DATA / "squad_passages.jsonl"
QUESTIONS = DATA / "squad_questions_dev.jsonl"
EXPRESSIONS = ["400/1400", "1234*5678", "sqrt(2)", "15% of 80", "(23+17)*3.5", "2^20", "7452/36"]
SNIPPETS = [
    "sum(i**2 for i in range(1, 21))",
    "import statistics; statistics.median([12, 7, 3, 19, 8])",
    "import sympy; sympy.factorint(360)",
    "print('hello'); 6 * 7",
]


@dataclasses.dataclass
class Row:
    tool: str
    case: str
    seconds: list[float]
    errors: int = 0

    def markdown(self) -> str:
        ms = sorted(s * 1000 for s in self.seconds)
        p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        failed = f" ({self.errors} errors)" if self.errors else ""
        return f"| {self.tool} | {self.case} | {len(ms)}{failed} | {p50:.1f} | {p99:.1f} |"


async def measure(
    tool: Tool, case: str, arguments: Sequence[str], between: Callable[[], Awaitable[None]]
) -> Row:
    row = Row(tool.name, case, [])
    for argument in arguments:
        await between()
        outcome = await invoke(tool, argument, timeout_s=30.0)
        row.seconds.append(outcome.duration_s)
        row.errors += outcome.error is not None
    return row


async def nothing() -> None:
    return None


async def calculator_rows(n: int) -> list[Row]:
    with Calculator() as calculator:
        await invoke(calculator, "1+1", 30.0)  # the worker's start is not a call's cost
        args = [EXPRESSIONS[i % len(EXPRESSIONS)] for i in range(n)]
        return [await measure(calculator, "warm worker", args, nothing)]


async def python_rows(n: int) -> list[Row]:
    args = [SNIPPETS[i % len(SNIPPETS)] for i in range(n)]
    with PythonSandbox(pool_size=0) as cold:
        cold_row = await measure(cold, "cold (no spare process)", args, nothing)
    with PythonSandbox(pool_size=1) as warm:
        warm.start()

        async def spare_ready() -> None:  # calls arriving slower than a spare starts
            await asyncio.sleep(0.5)

        warm_row = await measure(warm, "warm (spare ready)", args, spare_ready)
    return [cold_row, warm_row]


def repeated_corpus(scale: int, folder: Path) -> Path:
    """The SQuAD paragraphs `scale` times over, doc ids suffixed, as a JSONL corpus."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    path = folder / f"squad-x{scale}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for n in range(scale):
            for line in lines:
                out.write(line.replace('"doc_id": "', f'"doc_id": "x{n}-', 1) + "\n")
    return path


async def search_rows(queries: list[str], scale: int, scratch: Path) -> list[Row]:
    rows = []
    for label, corpus in (("x1", CORPUS), (f"x{scale}", repeated_corpus(scale, scratch))):
        backend = LocalSearchBackend(corpus, index_dir=scratch / f"search-{label}")
        started = time.perf_counter()
        index = backend.prepare()
        built = time.perf_counter() - started
        search = Search(backend, cache_ttl_s=0)  # every query reaches the index
        size = f"{len({p.doc_id for p in index.passages}):,} docs, {len(index.passages):,} passages"
        case = f"local, {size} (built in {built:.0f} s)"
        rows.append(await measure(search, case, queries, nothing))
    cached = Search(LocalSearchBackend(CORPUS, index_dir=scratch / "search-x1"))
    await invoke(cached, queries[0], 30.0)
    rows.append(await measure(cached, "cache hit", [queries[0]] * len(queries), nothing))
    return rows


async def retrieve_rows(
    queries: list[str], scale: int, scratch: Path, embedder: Embedder
) -> tuple[list[Row], HybridIndex]:
    retrieve = Retrieve(CORPUS, scratch / "retrieve", embedder=embedder)
    started = time.perf_counter()
    index = retrieve.prepare()
    built = time.perf_counter() - started
    case = f"hybrid, 2,067 docs, {len(index.passages):,} passages (built in {built:.0f} s)"
    rows = [await measure(retrieve, case, queries, nothing)]

    big = tiled(index, scale)
    over_big = Retrieve(CORPUS, scratch / "unused", embedder=embedder, index=big)
    case = f"hybrid, {2067 * scale:,} docs, {len(big.passages):,} passages (tiled embeddings)"
    rows.append(await measure(over_big, case, queries, nothing))
    return rows, index


def tiled(index: HybridIndex, scale: int) -> HybridIndex:
    """The index `scale` times over: distinct doc ids, BM25 rebuilt, embeddings repeated."""
    passages = [
        dataclasses.replace(p, doc_id=f"x{n}-{p.doc_id}", passage_id=f"x{n}-{p.passage_id}")
        for n in range(scale)
        for p in index.passages
    ]
    assert index.embeddings is not None and index.embedder is not None
    bm25 = Bm25Index.build([p.search_text for p in passages])
    embeddings = np.tile(index.embeddings, (scale, 1))
    return HybridIndex(passages, bm25, embeddings, index.embedder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=150, help="SQuAD dev questions to ask")
    parser.add_argument("--calls", type=int, default=40, help="calls per Calculator/Python case")
    parser.add_argument("--scale", type=int, default=100, help="copies of the corpus for 'big'")
    args = parser.parse_args()

    questions = load_questions(QUESTIONS)
    queries = [q.question for q in questions][: args.queries]
    embedder = Embedder()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        rows = asyncio.run(calculator_rows(args.calls))
        rows += asyncio.run(python_rows(args.calls))
        rows += asyncio.run(search_rows(queries, args.scale, folder))
        retrieve, index = asyncio.run(retrieve_rows(queries, args.scale, folder, embedder))
        rows += retrieve

    print("| tool | case | calls | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(row.markdown())
    table = {mode: recall_at_k(index, questions, mode, (1, 5, 10)) for mode in MODES}
    print(
        f"\nRecall on SQuAD v1.1 dev ({len(questions)} questions, {len(index.passages):,} "
        "passages of 2,067 paragraphs; a hit is a gold paragraph among the top k):\n"
    )
    print(markdown(table))


if __name__ == "__main__":
    main()
