"""The math eval: how well each way of reasoning answers word problems, against the model alone.

Each question of a JSONL file of `{id, question, answer}` (data/gsm8k_dev.jsonl,
data/math_svamp_dev.jsonl) is answered by one engine, on one model, in every mode asked for. A
mode is a strategy (`strategies`: `cot`, `toolformer`, `calculator`, `program`, `auto`),
optionally with self-consistency: `program@k5` samples five answers in one batch and votes.

- `cot` is the baseline: the model alone, as a user of llama.cpp or Ollama would run it (its chat
  template and system prompt, "Please reason step by step, and put your final answer within
  \\boxed{}", greedy, up to 1,024 tokens). Every other mode is reported against it, with the
  exact McNemar p of the paired right/wrong answers (`p_vs_cot`).
- `toolformer` is the one-sentence style with the Calculator alone.

Decoding is greedy, except the samples of `@k` modes (temperature 0.7, seeds `seed + i`). An
answer is right when its value (`FinalEvent.value`: how each strategy reads it) equals the gold
answer within `numbers`' tolerance. Latency is a question's wall-clock time (with `workers` > 1,
waiting for the other questions' model steps included: measure latency with one worker).

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

from agent_server import answering
from agent_server.answering import AnswerRequest
from agent_server.core import numbers, strategies
from agent_server.core.decoding import Sampling
from agent_server.core.engine import Engine, final_event
from agent_server.core.events import FinalEvent
from agent_server.errors import ConfigError
from agent_server.evals import report, scoring
from agent_server.evals.report import Column
from agent_server.evals.runner import Journal, Progress, read_jsonl, run_all
from agent_server.runtime import build_engine
from agent_server.settings import Settings

BASELINE = "cot"
MODES = ("cot", "toolformer", "calculator", "program", "tir", "consensus")
TOOLFORMER_TOOLS = ["Calculator"]  # the math tool: with all of them it would be choosing, too
SAMPLE_TEMPERATURE = 0.7  # the self-consistency paper's for GPT-3 and PaLM (no top-k here)

COLUMNS = (
    Column("n", "questions", "count"),
    Column("accuracy", "accuracy", "share"),
    Column("p_vs_cot", "p vs cot", "p"),
    Column("median_latency_s", "median s", "seconds"),
    Column("p95_latency_s", "p95 s", "seconds"),
    Column("mean_tokens", "tokens", "count"),
    Column("call_rate", "answers with a call", "share"),
    Column("well_formed_rate", "calls that ran", "share"),
    Column("sample_accuracy", "single-sample accuracy", "share"),
    Column("check_rate", "answers a check caught", "share"),
)
BARS = (COLUMNS[1],)


@dataclass(frozen=True)
class MathConfig:
    limit: int = 0  # the first N questions; 0: all
    workers: int = 1
    modes: tuple[str, ...] = MODES
    max_new_tokens: int | None = None  # None: each strategy's own budget
    temperature: float = SAMPLE_TEMPERATURE
    seed: int = 0
    resume: bool = False  # keep the items the journal of an earlier, stopped run holds


@dataclass(frozen=True)
class Mode:
    """One row of the table: a strategy and how many samples vote."""

    name: str
    strategy: str
    samples: int


def parse_mode(name: str) -> Mode:
    """`program` or `program@k5`; `ConfigError` naming what is wrong."""
    strategy, _, k = name.partition("@k")
    if strategy not in strategies.CHOICES:
        raise ConfigError(f"mode {name!r}: the strategy must be one of {strategies.CHOICES}")
    if k and (not k.isdigit() or not 2 <= int(k) <= strategies.MAX_SAMPLES):
        raise ConfigError(f"mode {name!r}: @k takes 2 to {strategies.MAX_SAMPLES} samples")
    return Mode(name, strategy, int(k) if k else 1)


async def evaluate(
    engine: Engine,
    questions: Sequence[dict[str, Any]],
    config: MathConfig,
    progress: bool = True,
    journal: Journal | None = None,
) -> list[dict[str, Any]]:
    """The per-item log: one record per question and mode, modes one after another; each item
    also goes to `journal` as it is done, and the items it already holds are not asked again."""
    done = journal.resumed if journal is not None else {}
    items: list[dict[str, Any]] = []
    for mode in (parse_mode(m) for m in config.modes):
        missing = [q for q in questions if (mode.name, str(q["id"])) not in done]
        shown = Progress(len(missing), f"math {mode.name:>12}") if progress and missing else None

        async def one(question: dict[str, Any], mode: Mode = mode) -> dict[str, Any]:
            item = await answer_item(engine, question, mode, config)
            if journal is not None:
                journal.add(item)
            return item

        new = dict(
            zip(
                (str(q["id"]) for q in missing),
                await run_all(missing, one, config.workers, shown),
                strict=True,
            )
        )
        for question in questions:
            key = str(question["id"])
            earlier = done.get((mode.name, key))
            items.append(
                new[key] if earlier is None else {k: v for k, v in earlier.items() if k != "commit"}
            )
    return items


async def answer(
    engine: Engine, question: str, mode: Mode, config: MathConfig
) -> tuple[FinalEvent, float]:
    """`question` answered in `mode`, and the seconds it took."""
    sampling = Sampling(
        temperature=config.temperature if mode.samples > 1 else 0.0,
        seed=config.seed,
        max_new_tokens=config.max_new_tokens,
    )
    tools = TOOLFORMER_TOOLS if mode.strategy == "toolformer" else None
    asked = AnswerRequest(
        question, strategy=mode.strategy, samples=mode.samples, tools=tools, sampling=sampling
    )
    started = time.perf_counter()
    final = await final_event(answering.answer(asked, engine, None))
    return final, time.perf_counter() - started


async def answer_item(
    engine: Engine, question: dict[str, Any], mode: Mode, config: MathConfig
) -> dict[str, Any]:
    """One question in one mode, as a log record."""
    final, latency = await answer(engine, str(question["question"]), mode, config)
    return item_record(question, mode, final, latency)


def item_record(
    question: dict[str, Any], mode: Mode, final: FinalEvent, latency_s: float
) -> dict[str, Any]:
    gold = float(question["answer"])
    predicted = numbers.last_number(final.value)
    votes = [
        {
            "value": v.value,
            "samples": list(v.samples),
            "strategies": list(v.strategies),
            "mean_logprob": v.mean_logprob,
        }
        for v in final.votes
    ]
    sampled = [numbers.last_number(v.value) for v in final.votes for _ in v.samples]
    return {
        "id": question["id"],
        "mode": mode.name,
        "strategy": final.strategy,
        "gold": gold,
        "predicted": predicted,
        "correct": numbers.same_number(predicted, gold),
        "answer": final.answer,
        "text": final.text,
        "samples": len(sampled) if votes else 1,  # the answers voted on (consensus: its members)
        "samples_correct": (
            sum(numbers.same_number(v, gold) for v in sampled)
            if votes
            else int(numbers.same_number(predicted, gold))
        ),
        "votes": votes,
        "calls": len(final.trace),
        "well_formed": sum(r.result is not None for r in final.trace),
        "checks": [asdict(c) for c in final.checks],
        "tokens": final.usage.completion_tokens,
        "stop_reason": final.stop_reason,
        "latency_s": round(latency_s, 4),
    }


def summarise(items: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per mode, in the items' order of modes, from the items alone."""
    baseline = {i["id"]: bool(i["correct"]) for i in items if i["mode"] == BASELINE}
    summary: dict[str, dict[str, float | None]] = {}
    for mode in dict.fromkeys(i["mode"] for i in items):
        rows = [i for i in items if i["mode"] == mode]
        latencies = [float(i["latency_s"]) for i in rows]

        def total(key: str, rows: list[dict[str, Any]] = rows) -> int:
            return sum(int(i[key]) for i in rows)

        paired = [(bool(i["correct"]), baseline[i["id"]]) for i in rows if i["id"] in baseline]
        gained = sum(ours and not theirs for ours, theirs in paired)
        lost = sum(theirs and not ours for ours, theirs in paired)
        compared = mode != BASELINE and len(paired) == len(rows)
        summary[mode] = {
            "n": len(rows),
            "accuracy": scoring.share(total("correct"), len(rows)),
            "p_vs_cot": scoring.mcnemar_p(gained, lost) if compared else None,
            "gained_vs_cot": gained if compared else None,
            "lost_vs_cot": lost if compared else None,
            "median_latency_s": scoring.percentile(latencies, 0.5),
            "p95_latency_s": scoring.percentile(latencies, 0.95),
            "mean_latency_s": scoring.mean(latencies),
            "mean_tokens": scoring.mean([float(i["tokens"]) for i in rows]),
            "call_rate": scoring.share(sum(i["calls"] > 0 for i in rows), len(rows)),
            "well_formed_rate": scoring.share(total("well_formed"), total("calls")),
            "sample_accuracy": scoring.share(total("samples_correct"), total("samples")),
            "check_rate": scoring.share(sum(bool(i["checks"]) for i in rows), len(rows)),
        }
    return summary


def load(data: Path, limit: int = 0) -> list[dict[str, Any]]:
    """The questions of `data`, each with its `id`, `question` and numeric `answer`."""
    return read_jsonl(data, limit, ("id", "question", "answer"))


async def run(
    settings: Settings, data: Path, config: MathConfig, out_dir: Path, command: str = ""
) -> tuple[report.Written, str]:
    """Load the model once, run every mode, write the result files; their paths and the table."""
    for mode in config.modes:
        parse_mode(mode)  # a typo fails before a minute of loading
    source = report.git_commit()  # the code that runs, read before it runs
    started = time.perf_counter()
    questions = load(data, config.limit)
    recorded = {
        "data": str(data),
        **asdict(config),
        "max_calls": settings.max_calls,
        "call_top_k": settings.call_top_k,
        "prompt_style": settings.prompt_style,
        "backend": settings.backend,
        "dtype": settings.dtype,  # transformers only
    }
    # What the items depend on: a resumed run may ask more questions or modes, nothing else.
    # Read before the model loads, so that a mismatch fails at once.
    skipped = ("limit", "workers", "modes", "resume")
    header = {"model": settings.model, **{k: v for k, v in recorded.items() if k not in skipped}}
    journal = Journal(out_dir / "math.items.jsonl", header, config.resume, source[0])
    try:
        engine = await asyncio.to_thread(build_engine, settings)
        try:
            recorded["backend"] = engine.backend.kind
            items = await evaluate(engine, questions, config, journal=journal)
        finally:
            engine.close()
    finally:
        journal.close()
    summary = summarise(items)
    recorded["commits"] = journal.commits()
    took = time.perf_counter() - started
    model = engine.backend.name
    result = report.result_file("math", model, command, recorded, summary, items, took, source)
    title = f"Math: {data.name}, {len(questions)} questions"
    return report.write(out_dir, result, COLUMNS, BARS, title), report.markdown_table(
        summary, COLUMNS
    )
