"""Function calling and structured output on a real model, printed request by request.

The requests are `agent_server.evals.function_calling`'s: ten that offer three functions (run
twice: with the service's own tools left out, as agent frameworks ask, and with them offered
beside the functions), and ten `response_format` requests with a JSON Schema each. The model is
the service's default unless `--model` says otherwise; decoding is greedy.

    python benchmarks/function_calling.py [--model NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from agent_server.evals import function_calling
from agent_server.evals.function_calling import Outcome
from agent_server.runtime import build_engine
from agent_server.settings import Settings


def report(title: str, outcomes: list[Outcome]) -> None:
    right = sum(o.right for o in outcomes)
    median = statistics.median(o.seconds for o in outcomes)
    print(f"\n{title}: {right}/{len(outcomes)} right, median {median:.1f} s")
    for o in outcomes:
        print(f"  {'ok ' if o.right else 'NO '} {o.question}\n       {o.written}")


async def main(model: str | None) -> None:
    settings = Settings(tools=["Calculator", "Python"], **({"model": model} if model else {}))
    engine = build_engine(settings)
    try:
        print(f"model: {engine.backend.name}")
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
