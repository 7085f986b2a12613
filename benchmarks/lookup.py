"""Prompt-lookup speculative decoding (`agent_server.core.lookup`): its speed-up, measured.

The same greedy answers are decoded with the lookup off and on (each question both ways, one
after the other, so a busy moment of the machine falls on both), on the default model through
the engine:
- chain-of-thought math: the `cot` strategy on GSM8K problems of the tune set
  (`data/gsm8k_tune.jsonl`: speed is measured there, never accuracy);
- WebGPT answers: the answering prompt with three SQuAD passages as its quotes (the question's
  own passage and two others), as WebGPT mode puts them.

Printed per kind and per guess length: decode tokens/s off and on (prompt reading and tools
left out: the lookup changes neither), the speed-up, the share of guessed tokens the answer
chose, and how many answers came out token-identical (greedy must: a difference can only be
llama.cpp rounding a batch of several tokens differently from a batch of one).

    python benchmarks/lookup.py [--questions 6] [--drafts 1,2,3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from agent_server.core.decoding import Sampling
from agent_server.core.engine import Engine, final_event
from agent_server.core.events import FinalEvent
from agent_server.core.lookup import LookupConfig, LookupStats
from agent_server.core.prompts import exchange, load_template
from agent_server.runtime import build_engine
from agent_server.settings import Settings
from agent_server.webgpt.agent import ANSWER_STOPS
from agent_server.webgpt.citations import Quote, answer_context

DATA = Path(__file__).resolve().parent.parent / "data"
KINDS = ("math", "webgpt")


@dataclass
class Run:
    tokens: int = 0
    decode_s: float = 0.0
    texts: list[str] = field(default_factory=list)

    def add(self, final: FinalEvent) -> None:
        self.tokens += final.usage.completion_tokens
        self.decode_s += final.timings.total_s - final.timings.prefill_s - final.timings.tools_s
        self.texts.append(final.text)

    @property
    def tok_s(self) -> float:
        return self.tokens / self.decode_s if self.decode_s else 0.0


@dataclass
class Row:
    kind: str
    draft: int
    off: Run
    on: Run
    stats: LookupStats

    @property
    def speedup(self) -> float:
        return self.on.tok_s / self.off.tok_s if self.off.tok_s else 0.0

    @property
    def identical(self) -> int:
        return sum(a == b for a, b in zip(self.off.texts, self.on.texts, strict=True))

    @property
    def chosen(self) -> float:
        return self.stats.accepted / self.stats.drafted if self.stats.drafted else 0.0


def math_questions(n: int) -> list[str]:
    lines = (DATA / "gsm8k_tune.jsonl").read_text().splitlines()[:n]
    return [json.loads(line)["question"] for line in lines]


def webgpt_prompts(n: int) -> list[tuple[str, list[Quote]]]:
    passages = [json.loads(x) for x in (DATA / "squad_passages.jsonl").read_text().splitlines()]
    by_id = {p["doc_id"]: p for p in passages}
    questions = (DATA / "squad_questions_dev.jsonl").read_text().splitlines()[:n]
    prompts = []
    for i, line in enumerate(questions):
        item = json.loads(line)
        docs = [by_id[item["gold_doc_ids"][0]], passages[(37 * i + 11) % len(passages)]]
        docs.append(passages[(53 * i + 29) % len(passages)])
        quotes = [
            Quote(j + 1, d["title"], f"https://en.wikipedia.org/wiki/{d['title']}", d["text"][:600])
            for j, d in enumerate(docs)
        ]
        prompts.append((item["question"], quotes))
    return prompts


async def answer_math(engine: Engine, question: str) -> FinalEvent:
    return await engine.run(question, strategy="cot")


async def answer_webgpt(engine: Engine, question: str, quotes: list[Quote]) -> FinalEvent:
    style = engine.prompt.style
    system = load_template("webgpt_answer.j2").render().strip()
    user = f"Quotes:\n{answer_context(quotes)}\n\nQuestion: {question}"
    rendered = exchange(engine.backend, style, system, user, "Answer:", ANSWER_STOPS)
    return await final_event(engine.complete(rendered, Sampling(max_new_tokens=160)))


def measure_one(engine: Engine, kind: str, draft: int, n: int) -> Row:
    off, on = Run(), Run()
    base = replace(engine.config, lookup=None)
    engine.lookup_totals = LookupStats()  # this row's guesses only
    jobs: list[Callable[[], Coroutine[Any, Any, FinalEvent]]]
    if kind == "math":
        jobs = [partial(answer_math, engine, q) for q in math_questions(n)]
    else:
        jobs = [partial(answer_webgpt, engine, q, s) for q, s in webgpt_prompts(n)]
    engine.config = base
    # The first answer caches the prompt's start, and a prompt read in other pieces rounds
    # differently: every measured answer reads it from the cache.
    asyncio.run(jobs[0]())
    for job in jobs:
        engine.config = base
        off.add(asyncio.run(job()))
        engine.config = replace(base, lookup=LookupConfig(max_draft=draft))
        on.add(asyncio.run(job()))
    engine.config = base
    return Row(kind, draft, off, on, engine.lookup_totals)


@dataclass
class Figures:
    model: str
    rows: list[Row]

    def row(self, kind: str, draft: int) -> Row:
        (row,) = [r for r in self.rows if r.kind == kind and r.draft == draft]
        return row


def measure(
    settings: Settings, questions: int, drafts: Sequence[int], kinds: Sequence[str] = KINDS
) -> Figures:
    """Every kind of answer with each guess length, on the settings' model."""
    engine = build_engine(settings.model_copy(update={"prompt_lookup": 0}), tools={})
    try:
        rows = [measure_one(engine, kind, d, questions) for kind in kinds for d in drafts]
    finally:
        engine.close()
    return Figures(engine.backend.name, rows)


def markdown(figures: Figures) -> str:
    lines = [
        f"Prompt lookup, {figures.model}, greedy; decode tokens/s with it off and on",
        "",
        "| kind | tokens guessed per step | answers | tokens | off tok/s | on tok/s "
        "| speed-up | guesses chosen | identical |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in figures.rows:
        lines.append(
            f"| {r.kind} | {r.draft} | {len(r.off.texts)} | {r.off.tokens} | {r.off.tok_s:.1f} "
            f"| {r.on.tok_s:.1f} | {r.speedup:.2f}x | {r.chosen:.0%} "
            f"| {r.identical}/{len(r.off.texts)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--drafts", default="1,2,3", help="guess lengths, comma-separated")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    settings = Settings(**({"model": args.model} if args.model else {}))
    drafts = [int(d) for d in args.drafts.split(",")]
    print(markdown(measure(settings, args.questions, drafts, args.kinds.split(","))))


if __name__ == "__main__":
    main()
