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

    python benchmarks/tool_latency.py [--queries 150] [--calls 40] [--scale 100]

`measure` returns the figures (benchmarks/run.py uses it); `main` prints the tables.
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
from tools.retrieval import MODES, HybridIndex, Mode, Retrieve  # noqa: E402
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

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.seconds)

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.seconds)
        return 1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    def figures(self) -> dict[str, object]:
        return {
            "tool": self.tool,
            "case": self.case,
            "calls": len(self.seconds),
            "errors": self.errors,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }

    def markdown(self) -> str:
        failed = f" ({self.errors} errors)" if self.errors else ""
        return (
            f"| {self.tool} | {self.case} | {len(self.seconds)}{failed} "
            f"| {self.p50_ms:.1f} | {self.p99_ms:.1f} |"
        )


@dataclasses.dataclass
class Figures:
    rows: list[Row]
    recall: dict[Mode, dict[int, float]]  # recall@k per ranking, on the 2,067 paragraphs
    questions: int
    passages: int


async def time_calls(
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
        return [await time_calls(calculator, "warm worker", args, nothing)]


async def python_rows(n: int) -> list[Row]:
    args = [SNIPPETS[i % len(SNIPPETS)] for i in range(n)]
    with PythonSandbox(pool_size=0) as cold:
        cold_row = await time_calls(cold, "cold (no spare process)", args, nothing)
    with PythonSandbox(pool_size=1) as warm:
        warm.start()

        async def spare_ready() -> None:  # calls arriving slower than a spare starts
            await asyncio.sleep(0.5)

        warm_row = await time_calls(warm, "warm (spare ready)", args, spare_ready)
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
    corpora = [("x1", CORPUS)]
    if scale > 1:
        corpora.append((f"x{scale}", repeated_corpus(scale, scratch)))
    for label, corpus in corpora:
        backend = LocalSearchBackend(corpus, index_dir=scratch / f"search-{label}")
        started = time.perf_counter()
        index = backend.prepare()
        built = time.perf_counter() - started
        search = Search(backend, cache_ttl_s=0)  # every query reaches the index
        size = f"{len({p.doc_id for p in index.passages}):,} docs, {len(index.passages):,} passages"
        case = f"local, {size} (built in {built:.0f} s)"
        rows.append(await time_calls(search, case, queries, nothing))
    cached = Search(LocalSearchBackend(CORPUS, index_dir=scratch / "search-x1"))
    await invoke(cached, queries[0], 30.0)
    rows.append(await time_calls(cached, "cache hit", [queries[0]] * len(queries), nothing))
    return rows


async def retrieve_rows(
    queries: list[str], scale: int, scratch: Path, embedder: Embedder
) -> tuple[list[Row], HybridIndex]:
    retrieve = Retrieve(CORPUS, scratch / "retrieve", embedder=embedder)
    started = time.perf_counter()
    index = retrieve.prepare()
    built = time.perf_counter() - started
    case = f"hybrid, 2,067 docs, {len(index.passages):,} passages (built in {built:.0f} s)"
    rows = [await time_calls(retrieve, case, queries, nothing)]
    if scale <= 1:
        return rows, index

    big = tiled(index, scale)
    over_big = Retrieve(CORPUS, scratch / "unused", embedder=embedder, index=big)
    case = f"hybrid, {2067 * scale:,} docs, {len(big.passages):,} passages (tiled embeddings)"
    rows.append(await time_calls(over_big, case, queries, nothing))
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


def measure(queries: int = 150, calls: int = 40, scale: int = 100) -> Figures:
    """Every latency row and the recall table; `scale` <= 1 leaves out the large corpora."""
    questions = load_questions(QUESTIONS)
    asked = [q.question for q in questions][:queries]
    embedder = Embedder()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        rows = asyncio.run(calculator_rows(calls))
        rows += asyncio.run(python_rows(calls))
        rows += asyncio.run(search_rows(asked, scale, folder))
        retrieve, index = asyncio.run(retrieve_rows(asked, scale, folder, embedder))
        rows += retrieve
    table = {mode: recall_at_k(index, questions, mode, (1, 5, 10)) for mode in MODES}
    return Figures(rows, table, len(questions), len(index.passages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=150, help="SQuAD dev questions to ask")
    parser.add_argument("--calls", type=int, default=40, help="calls per Calculator/Python case")
    parser.add_argument("--scale", type=int, default=100, help="copies of the corpus for 'big'")
    args = parser.parse_args()

    figures = measure(args.queries, args.calls, args.scale)
    print("| tool | case | calls | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for row in figures.rows:
        print(row.markdown())
    print(
        f"\nRecall on SQuAD v1.1 dev ({figures.questions} questions, {figures.passages:,} "
        "passages of 2,067 paragraphs; a hit is a gold paragraph among the top k):\n"
    )
    print(markdown(figures.recall))


if __name__ == "__main__":
    main()
