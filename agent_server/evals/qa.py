"""The QA eval: do retrieval, search and WebGPT mode make the model answer factual questions?

Questions are a JSONL file of `{id, question, answers: [...], gold_doc_ids: [...]}` over a corpus
of `{doc_id, title, text}` (e.g. data/squad_questions_dev.jsonl over data/squad_passages.jsonl).
One model, loaded once, answers each question in each mode with the same token budget:

- `no_tools`: the model alone (`tools=[]`),
- `retrieve`: the Retrieve tool only, over the corpus (hybrid BM25 + embeddings),
- `search`: the Search tool only, with the local backend over the corpus (BM25),
- `webgpt`: WebGPT mode (built-in policy) browsing the corpus through that search.

Scores follow SQuAD v1.1 (`scoring`): exact match and containment against any gold answer, after
`[n]` markers and WebGPT's "browsing stopped" note (`FinalEvent.note`) are taken out of the
answer. Beside them:

- recall@1/3/5 of the ranking the mode searches with (hybrid for `retrieve`, BM25 for `search`
  and `webgpt`), for the question itself as the query (`recall.gold_rank`),
- gold read: a gold document was among what the answer was written from (the results of its
  calls; for `webgpt`, its quotes' pages),
- for `webgpt`: citation validity (the share of `[n]` markers naming a collected quote) and the
  share of questions with a gold answer inside a quote.

Left out: self-consistency (`--samples`) is the math eval's; a text answer has no number to vote.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_server import answering
from agent_server.answering import AnswerRequest
from agent_server.core.decoding import Sampling
from agent_server.core.engine import Engine, final_event
from agent_server.errors import ConfigError
from agent_server.evals import report, scoring
from agent_server.evals.recall import gold_rank
from agent_server.evals.report import Column
from agent_server.evals.runner import Progress, read_jsonl, run_all
from agent_server.runtime import build_engine, build_webgpt
from agent_server.settings import Settings
from agent_server.webgpt.agent import WebGPT
from agent_server.webgpt.citations import MARKER_NUMBERS

if TYPE_CHECKING:
    from tools.retrieval import HybridIndex, Mode

    Ranking = tuple[HybridIndex, Mode]  # an index and how to rank with it, for recall@k

MODES = ("no_tools", "retrieve", "search", "webgpt")
TOOLS = {"no_tools": [], "retrieve": ["Retrieve"], "search": ["Search"]}
KS = (1, 3, 5)
# A factual answer is a sentence; with a call and its three results spliced in, 128 new tokens
# still leave the answer room (WebGPT's own answer is capped at 160 by its config).
MAX_NEW_TOKENS = 128
_DOC_URL = re.compile(r"doc://(\S+?)[)\s\]]")

COLUMNS = (
    Column("n", "questions", "count"),
    Column("exact_match", "exact match", "share"),
    Column("contained", "answer contained", "share"),
    Column("call_rate", "answers with a call", "share"),
    *(Column(f"recall@{k}", f"recall@{k}", "share") for k in KS),
    Column("gold_read_rate", "gold doc read", "share"),
    Column("citation_validity", "citations valid", "share"),
    Column("gold_in_quote_rate", "gold in a quote", "share"),
    Column("mean_latency_s", "mean s", "seconds"),
    Column("p95_latency_s", "p95 s", "seconds"),
)
BARS = (COLUMNS[1], COLUMNS[2], COLUMNS[6], COLUMNS[8])  # EM, contained, recall@5, citations


@dataclass(frozen=True)
class QAConfig:
    limit: int = 0  # the first N questions; 0: all
    workers: int = 1
    modes: tuple[str, ...] = MODES
    max_new_tokens: int = MAX_NEW_TOKENS


def settings_for(settings: Settings, corpus: Path, modes: Sequence[str]) -> Settings:
    """The settings with just the tools `modes` need, all over `corpus`."""
    tools = ["Retrieve"] if "retrieve" in modes else []
    tools += ["Search"] if {"search", "webgpt"} & set(modes) else []
    update: dict[str, Any] = {"tools": tools, "search_backend": "local", "search_corpus": corpus}
    if "retrieve" in modes:
        update["documents"] = corpus
    return settings.model_copy(update=update)


async def evaluate(
    engine: Engine,
    webgpt: WebGPT | None,
    questions: Sequence[dict[str, Any]],
    config: QAConfig,
    rankings: Mapping[str, Ranking] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The per-item log: one record per question and mode, modes one after another.

    `rankings` holds, per mode, the index it searches, for recall@k (none: not measured)."""
    items: list[dict[str, Any]] = []
    for mode in config.modes:
        ranking = (rankings or {}).get(mode)
        shown = Progress(len(questions), f"qa {mode:>8}") if progress else None

        async def one(
            question: dict[str, Any], mode: str = mode, ranking: Ranking | None = ranking
        ) -> dict[str, Any]:
            return await answer_item(engine, webgpt, question, mode, config, ranking)

        items += await run_all(questions, one, config.workers, shown)
    return items


async def answer_item(
    engine: Engine,
    webgpt: WebGPT | None,
    question: dict[str, Any],
    mode: str,
    config: QAConfig,
    ranking: Ranking | None = None,
) -> dict[str, Any]:
    """One question in one mode, as a log record; `ranking` is (index, its mode) for recall."""
    sampling = Sampling(max_new_tokens=config.max_new_tokens)
    text = str(question["question"])
    started = time.perf_counter()
    if mode == "webgpt":
        asked = AnswerRequest(text, mode="webgpt", sampling=sampling)
    else:
        asked = AnswerRequest(text, tools=TOOLS[mode], sampling=sampling)
    final = await final_event(answering.answer(asked, engine, webgpt))
    latency = time.perf_counter() - started
    gold, gold_docs = list(question["answers"]), set(question.get("gold_doc_ids", ()))
    answer = final.answer.removesuffix(final.note)  # the service's note is not the model's
    said = MARKER_NUMBERS.sub("", answer)
    record: dict[str, Any] = {
        "id": question["id"],
        "mode": mode,
        "answer": final.answer,
        "exact_match": scoring.exact_match(said, gold),
        "contained": scoring.contains_answer(said, gold),
        "latency_s": round(latency, 4),
        "ranking": None,
        "gold_rank": None,
        "gold_read": None,
    }
    if ranking is not None and gold_docs:
        index, ranked_by = ranking
        rank = await asyncio.to_thread(gold_rank, index, text, gold_docs, ranked_by, max(KS))
        record.update(ranking=ranked_by, gold_rank=rank)
    if mode == "webgpt":
        numbers = {q.number for q in final.quotes}
        markers = [int(n) for n in MARKER_NUMBERS.findall(answer)]
        record.update(
            actions=len(final.trace),
            calls=None,
            quotes=len(final.quotes),
            markers=len(markers),
            valid_markers=sum(n in numbers for n in markers),
            gold_in_quote=any(scoring.contains_answer(q.text, gold) for q in final.quotes),
            gold_read=bool(gold_docs & {_doc_id(q.url) for q in final.quotes}),
        )
    else:
        read = {m for r in final.trace if r.result for m in _DOC_URL.findall(r.result + " ")}
        well_formed = sum(r.result is not None for r in final.trace)
        record.update(calls=len(final.trace), well_formed=well_formed)
        if mode != "no_tools":
            record["gold_read"] = bool(gold_docs & read)
    return record


def summarise(items: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per mode, in the items' order of modes, from the items alone; a figure that does not
    apply to a mode (no ranking, no calls, no citations) is None."""
    summary: dict[str, dict[str, float | None]] = {}
    for mode in dict.fromkeys(i["mode"] for i in items):
        rows = [i for i in items if i["mode"] == mode]
        ranked = [i for i in rows if i["ranking"] is not None]
        read = [bool(i["gold_read"]) for i in rows if i["gold_read"] is not None]
        with_calls = [i for i in rows if i.get("calls") is not None]
        browsed = [i for i in rows if "markers" in i]
        latencies = [float(i["latency_s"]) for i in rows]
        row: dict[str, float | None] = {
            "n": len(rows),
            "exact_match": scoring.share(sum(i["exact_match"] for i in rows), len(rows)),
            "contained": scoring.share(sum(i["contained"] for i in rows), len(rows)),
            "call_rate": scoring.share(sum(i["calls"] > 0 for i in with_calls), len(with_calls)),
        }
        for k in KS:
            hits = sum(i["gold_rank"] is not None and i["gold_rank"] <= k for i in ranked)
            row[f"recall@{k}"] = scoring.share(hits, len(ranked))
        row["gold_read_rate"] = scoring.share(sum(read), len(read))
        row["citation_validity"] = scoring.share(
            sum(i["valid_markers"] for i in browsed), sum(i["markers"] for i in browsed)
        )
        row["gold_in_quote_rate"] = scoring.share(
            sum(i["gold_in_quote"] for i in browsed), len(browsed)
        )
        row["mean_latency_s"] = scoring.mean(latencies)
        row["p95_latency_s"] = scoring.percentile(latencies, 0.95)
        summary[mode] = row
    return summary


def load(data: Path, limit: int = 0) -> list[dict[str, Any]]:
    """The questions of `data`, each with its `id`, `question` and gold `answers`."""
    return read_jsonl(data, limit, ("id", "question", "answers"))


async def run(
    settings: Settings,
    data: Path,
    corpus: Path,
    config: QAConfig,
    out_dir: Path,
    command: str = "",
) -> tuple[report.Written, str]:
    """Load the model once, run every mode, write the result files; their paths and the table."""
    unknown = sorted(set(config.modes) - set(MODES))
    if unknown:
        raise ConfigError(f"unknown modes {unknown}; known: {', '.join(MODES)}")
    source = report.git_commit()  # the code that runs, read before it runs
    started = time.perf_counter()
    questions = load(data, config.limit)
    settings = settings_for(settings, corpus, config.modes)
    engine = await asyncio.to_thread(build_engine, settings)
    webgpt = build_webgpt(settings, engine) if "webgpt" in config.modes else None
    try:
        rankings = await asyncio.to_thread(indexes, engine, config.modes)
        items = await evaluate(engine, webgpt, questions, config, rankings)
    finally:
        if webgpt is not None:
            await webgpt.aclose()
        engine.close()
    summary = summarise(items)
    recorded = {
        "data": str(data),
        "corpus": str(corpus),
        **asdict(config),
        "max_calls": settings.max_calls,
        "call_top_k": settings.call_top_k,
        "search_results": settings.search_results,
        "webgpt_policy": settings.webgpt_policy,
        "prompt_style": settings.prompt_style,
        "backend": engine.backend.kind,
        "dtype": settings.dtype,  # transformers only
    }
    took = time.perf_counter() - started
    model = engine.backend.name
    result = report.result_file("qa", model, command, recorded, summary, items, took, source)
    title = f"QA: {data.name} over {corpus.name}, {len(questions)} questions"
    written = report.write(out_dir, result, COLUMNS, BARS, title)
    return written, report.markdown_table(summary, COLUMNS)


def indexes(engine: Engine, modes: Sequence[str]) -> dict[str, Ranking]:
    """The index each mode searches (built now if need be) and its ranking, for recall@k."""
    from tools.retrieval import Retrieve
    from tools.search import Search
    from tools.search_local import LocalSearchBackend

    found: dict[str, Ranking] = {}
    retrieve, search = engine.tools.get("Retrieve"), engine.tools.get("Search")
    if "retrieve" in modes and isinstance(retrieve, Retrieve):
        found["retrieve"] = (retrieve.prepare(), "hybrid")
    if isinstance(search, Search) and isinstance(search.backend, LocalSearchBackend):
        index = search.backend.prepare()
        found.update({mode: (index, "bm25") for mode in ("search", "webgpt") if mode in modes})
    return found


def _doc_id(url: str) -> str:
    return url.removeprefix("doc://")
