"""The math eval: does the Calculator make the model answer word problems better?

Each question of a JSONL file of `{id, question, answer}` (e.g. data/math_svamp_dev.jsonl) is
answered by one engine, on one model, in two modes with the same prompt and token budget:

- `tools`: the Calculator only (the math tool; with every tool in the prompt the model would be
  judged on choosing among them too),
- `no_tools`: no tool at all (`tools=[]`: the prompt has no tool and no call can run).

Greedy decoding. An answer is correct when its last number equals the gold answer within the
tolerance of `scoring`, each call in the text standing for its result: the model may write
`Lawrence county has [Calculator(907611+455682) → 1363293] kids.`, and its number is 1363293.
(The answer as the service shows it has its calls removed, a result kept where the call stood
for a value: `calls.strip_calls`; `shown_accuracy` scores that text, to keep any gap in view.)

With calls: how often an answer made one; how often a call was well-formed, meaning the tool ran
it and gave a result (not malformed, a real tool, an argument the Calculator accepts: "12 cups
of flour - 11 cups" is not); and how often a result was used, meaning the answer's number is a
result of one of its calls (`scoring.written_as`: 0.2857 stated as 0.29 counts). Latency is a
question's wall-clock time, waiting for the model thread included (see `runner` on `workers`).

Self-consistency (Wang et al., 2023): with `samples` K > 1, each mode also answers every question
K times at temperature 0.7 (seed `seed + i` for the i-th sample) and takes the majority number,
as mode `<mode>@k<K>`; its `sample_accuracy` is that of the single samples, so the table shows
what sampling loses and what the vote buys back. Its latency is that of all K answers.

Every (question, mode) is one item of the per-item log; `summarise` computes the summary from
the items alone, so anyone can check it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent_server.calls import Call, parse
from agent_server.decoding import Sampling
from agent_server.engine import Engine
from agent_server.errors import ConfigError
from agent_server.evals import report, scoring
from agent_server.evals.report import Column
from agent_server.evals.runner import Progress, read_jsonl, run_all
from agent_server.events import FinalEvent
from agent_server.runtime import build_engine
from agent_server.settings import Settings

TOOL = "Calculator"
MODES = ("tools", "no_tools")
# An SVAMP answer with its call takes 30-60 tokens; without tools the model may reason a few
# sentences first. 160 leaves both room without letting a rambling answer run for 20 s.
MAX_NEW_TOKENS = 160
SAMPLE_TEMPERATURE = 0.7  # the self-consistency paper's for GPT-3 and PaLM (no top-k here)

COLUMNS = (
    Column("n", "questions", "count"),
    Column("accuracy", "accuracy", "share"),
    Column("shown_accuracy", "accuracy of the answer as shown", "share"),
    Column("sample_accuracy", "single-answer accuracy", "share"),
    Column("call_rate", "answers with a call", "share"),
    Column("well_formed_rate", "calls well-formed", "share"),
    Column("result_used_rate", "results used", "share"),
    Column("mean_latency_s", "mean s", "seconds"),
    Column("p95_latency_s", "p95 s", "seconds"),
)
BARS = (COLUMNS[1], COLUMNS[4])  # accuracy, answers with a call


@dataclass(frozen=True)
class MathConfig:
    limit: int = 0  # the first N questions; 0: all
    workers: int = 1
    samples: int = 1  # K > 1 adds a majority-of-K mode per mode
    modes: tuple[str, ...] = MODES
    max_new_tokens: int = MAX_NEW_TOKENS
    temperature: float = SAMPLE_TEMPERATURE
    seed: int = 0


@dataclass(frozen=True)
class Attempt:
    """One answer to one question."""

    answer: str  # as shown to a reader: calls removed
    text: str  # as written, with the results spliced in
    predicted: float | None  # the last number, results standing in for their calls
    shown_predicted: float | None  # the last number of `answer`
    calls: int
    well_formed: int  # calls the tool ran and answered
    result_used: bool  # the predicted number is a call's result
    latency_s: float


def mode_names(config: MathConfig) -> list[str]:
    """The modes' rows, greedy first: `tools`, `no_tools`, then `tools@k5`, `no_tools@k5`."""
    sampled = [f"{m}@k{config.samples}" for m in config.modes] if config.samples > 1 else []
    return [*config.modes, *sampled]


async def evaluate(
    engine: Engine,
    questions: Sequence[dict[str, Any]],
    config: MathConfig,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The per-item log: one record per question and mode, modes one after another."""
    items: list[dict[str, Any]] = []
    for mode in mode_names(config):
        shown = Progress(len(questions), f"math {mode:>12}") if progress else None

        async def one(question: dict[str, Any], mode: str = mode) -> dict[str, Any]:
            return await answer_item(engine, question, mode, config)

        items += await run_all(questions, one, config.workers, shown)
    return items


async def answer_item(
    engine: Engine, question: dict[str, Any], mode: str, config: MathConfig
) -> dict[str, Any]:
    """One question in one mode (`tools`, `no_tools`, or either `@k<K>`), as a log record."""
    base, _, k = mode.partition("@k")
    tools = [TOOL] if base == "tools" else []
    if k:
        samplings = [
            Sampling(config.temperature, seed=config.seed + i, max_new_tokens=config.max_new_tokens)
            for i in range(int(k))
        ]
    else:
        samplings = [Sampling(max_new_tokens=config.max_new_tokens)]
    attempts = [await attempt(engine, str(question["question"]), tools, s) for s in samplings]
    return item_record(question, mode, attempts)


async def attempt(engine: Engine, question: str, tools: list[str], sampling: Sampling) -> Attempt:
    started = time.perf_counter()
    final = await engine.run(question, sampling=sampling, tools=tools)
    latency = time.perf_counter() - started
    written = with_results(final)
    results = [scoring.last_number(r.result) for r in final.trace if r.result is not None]
    stated = scoring.last_number_text(written)
    return Attempt(
        answer=final.answer,
        text=final.text,
        predicted=scoring.last_number(written),
        shown_predicted=scoring.last_number(final.answer),
        calls=len(final.trace),
        well_formed=sum(r.result is not None for r in final.trace),
        result_used=stated is not None
        and any(v is not None and scoring.written_as(v, stated) for v in results),
        latency_s=latency,
    )


def with_results(final: FinalEvent) -> str:
    """The answer as written, each call replaced by its result (a failed call by nothing): a
    result can stand in the sentence itself ("has [Calculator(9+4) → 13] kids")."""
    records = iter(final.trace)  # the spliced calls in order, then malformed ones (engine.py)
    parts = []
    for segment in parse(final.text):
        if isinstance(segment, str):
            parts.append(segment)
        elif isinstance(segment, Call):
            record = next(records, None)
            parts.append(record.result or "" if record is not None else "")
    return "".join(parts)


def item_record(question: dict[str, Any], mode: str, attempts: list[Attempt]) -> dict[str, Any]:
    gold = float(question["answer"])
    predictions = [a.predicted for a in attempts]
    greedy = len(attempts) == 1
    predicted = predictions[0] if greedy else scoring.majority(predictions)
    shown_predicted = [a.shown_predicted for a in attempts]
    shown_vote = shown_predicted[0] if greedy else scoring.majority(shown_predicted)
    # The answer kept is the first whose number won the vote (the only one, when greedy).
    kept = next((a for a in attempts if scoring.same_number(a.predicted, predicted)), attempts[0])
    record: dict[str, Any] = {
        "id": question["id"],
        "mode": mode,
        "gold": gold,
        "predicted": predicted,
        "correct": scoring.same_number(predicted, gold),
        "shown_correct": scoring.same_number(shown_vote, gold),
        "answer": kept.answer,
        "text": kept.text,
        "samples": len(attempts),
        "samples_correct": sum(scoring.same_number(p, gold) for p in predictions),
        "samples_with_calls": sum(a.calls > 0 for a in attempts),
        "samples_with_results": sum(a.well_formed > 0 for a in attempts),
        "results_used": sum(a.result_used for a in attempts),
        "calls": sum(a.calls for a in attempts),
        "well_formed": sum(a.well_formed for a in attempts),
        "latency_s": round(sum(a.latency_s for a in attempts), 4),
    }
    if not greedy:
        record["sample_predictions"] = predictions
    return record


def summarise(items: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per mode, in the items' order of modes, from the items alone."""
    summary: dict[str, dict[str, float | None]] = {}
    for mode in dict.fromkeys(i["mode"] for i in items):
        rows = [i for i in items if i["mode"] == mode]
        latencies = [float(i["latency_s"]) for i in rows]

        def total(key: str, rows: list[dict[str, Any]] = rows) -> int:
            return sum(int(i[key]) for i in rows)

        summary[mode] = {
            "n": len(rows),
            "accuracy": scoring.share(total("correct"), len(rows)),
            "shown_accuracy": scoring.share(total("shown_correct"), len(rows)),
            "sample_accuracy": scoring.share(total("samples_correct"), total("samples")),
            "call_rate": scoring.share(total("samples_with_calls"), total("samples")),
            "well_formed_rate": scoring.share(total("well_formed"), total("calls")),
            "result_used_rate": scoring.share(total("results_used"), total("samples_with_results")),
            "mean_latency_s": scoring.mean(latencies),
            "p95_latency_s": scoring.percentile(latencies, 0.95),
        }
    return summary


def load(data: Path, limit: int = 0) -> list[dict[str, Any]]:
    """The questions of `data`, each with its `id`, `question` and numeric `answer`."""
    return read_jsonl(data, limit, ("id", "question", "answer"))


async def run(
    settings: Settings, data: Path, config: MathConfig, out_dir: Path, command: str = ""
) -> tuple[report.Written, str]:
    """Load the model once, run every mode, write the result files; their paths and the table."""
    unknown = sorted(set(config.modes) - set(MODES))
    if unknown or config.samples < 1:
        raise ConfigError(f"modes must be among {', '.join(MODES)} and samples at least 1")
    source = report.git_commit()  # the code that runs, read before it runs
    started = time.perf_counter()
    questions = load(data, config.limit)
    settings = settings.model_copy(update={"tools": [TOOL]})
    engine = await asyncio.to_thread(build_engine, settings)
    try:
        items = await evaluate(engine, questions, config)
    finally:
        engine.close()
    summary = summarise(items)
    recorded = {
        "data": str(data),
        **asdict(config),
        "tool": TOOL,
        "max_calls": settings.max_calls,
        "call_top_k": settings.call_top_k,
        "prompt_style": settings.prompt_style,
        "backend": engine.backend.kind,
        "dtype": settings.dtype,  # transformers only
    }
    took = time.perf_counter() - started
    model = engine.backend.name
    result = report.result_file("math", model, command, recorded, summary, items, took, source)
    title = f"Math: {data.name}, {len(questions)} questions"
    return report.write(out_dir, result, COLUMNS, BARS, title), report.markdown_table(
        summary, COLUMNS
    )
