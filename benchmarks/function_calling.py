"""Function calling and structured output on a real model, printed request by request.

The requests are `agent_server.evals.function_calling`'s: ten that offer three functions (run
twice: with the service's own tools left out, as agent frameworks ask, and with them offered
beside the functions), and ten `response_format` requests with a JSON Schema each. The model is
the service's default unless `--model` says otherwise; decoding is greedy. First it prints what
structured decoding costs: building the model's token table (once per model) and computing a
token mask (each constrained token), next to a decode step.

    python benchmarks/function_calling.py [--model NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

from agent_server.core.engine import Engine
from agent_server.core.structured import AnswerFormat
from agent_server.evals import function_calling
from agent_server.evals.function_calling import FORMATS, Outcome
from agent_server.runtime import build_engine
from agent_server.settings import Settings


def report(title: str, outcomes: list[Outcome]) -> None:
    right = sum(o.right for o in outcomes)
    median = statistics.median(o.seconds for o in outcomes)
    print(f"\n{title}: {right}/{len(outcomes)} right, median {median:.1f} s")
    for o in outcomes:
        print(f"  {'ok ' if o.right else 'NO '} {o.question}\n       {o.written}")


def mask_cost(engine: Engine) -> None:
    """The token table's build, and the mask per token while some JSON of each `FORMATS` schema
    is written (each step's last grammatical token, so only the grammar's work is timed)."""
    started = time.perf_counter()
    first = engine.grammars.for_answer(AnswerFormat(FORMATS[0][1]), {})
    table_s = time.perf_counter() - started
    assert first is not None
    masks = []
    logits = np.zeros(engine.backend.vocab.size(), dtype=np.float32)
    for _, schema in FORMATS:
        constraint = engine.grammars.for_answer(AnswerFormat(schema), {})
        assert constraint is not None
        for _ in range(200):  # the first 200 tokens of some grammatical text
            started = time.perf_counter()
            allowed = np.flatnonzero(np.isfinite(constraint.mask(logits)))
            masks.append(time.perf_counter() - started)
            if constraint.done:
                break
            constraint.advance(int(allowed[-1]))  # any grammatical token: the grammar's work
    session = engine.backend.new_session()
    session.feed(engine.backend.encode("Hello"))
    steps = []
    for _ in range(8):
        started = time.perf_counter()
        session.feed([0])
        steps.append(time.perf_counter() - started)
    mask_ms, step_ms = statistics.median(masks) * 1e3, statistics.median(steps) * 1e3
    print(
        f"token table and first grammar {table_s:.2f} s once; mask {mask_ms:.2f} ms a token "
        f"(median of {len(masks)}); decode step {step_ms:.0f} ms"
    )


async def main(model: str | None) -> None:
    settings = Settings(tools=["Calculator", "Python"], **({"model": model} if model else {}))
    engine = build_engine(settings)
    try:
        print(f"model: {engine.backend.name}")
        mask_cost(engine)
        report("functions, no service tools", await function_calling.function_calls(engine, []))
        tools = await function_calling.function_calls(engine, None)
        report("functions, Calculator and Python offered too", tools)
        report("response_format json_schema", await function_calling.json_answers(engine))
    finally:
        engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    asyncio.run(main(parser.parse_args().model))
