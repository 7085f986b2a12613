"""WebGPT mode on SQuAD, offline: do its quotes hold the answer, does its answer, are its
citations valid?

The "web" is SQuAD v1.1 dev's 2,067 paragraphs (data/squad_passages.jsonl; each paragraph is a
page) searched by the local backend; the questions are the 150 of data/squad_questions_dev.jsonl
(Rajpurkar et al., 2016; CC BY-SA 4.0; data/README.md). For each question it prints

- quote recall: the share of questions where a gold answer appears in a collected quote,
- answer recall: the share where a gold answer appears in the final answer,
- citation validity: the share of `[n]` markers in the answers that name a collected quote
  (must be 100%), and the share of answers citing at least one quote,

after SQuAD's answer normalisation (lower case, no punctuation or articles). The model is the
service's default unless `--model` says otherwise; the policy is the built-in one.

    python benchmarks/webgpt.py [--limit N] [--model NAME] [--policy builtin|model]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from agent_server.core.events import FinalEvent
from agent_server.evals.scoring import contains_answer
from agent_server.runtime import build_engine, build_webgpt
from agent_server.settings import Settings
from agent_server.webgpt.citations import MARKER_NUMBERS

DATA = Path(__file__).resolve().parents[1] / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def score(final: FinalEvent, answers: list[str]) -> dict[str, object]:
    numbers = {q.number for q in final.quotes}
    markers = [int(n) for n in MARKER_NUMBERS.findall(final.answer)]
    return {
        "in_quote": any(contains_answer(q.text, answers) for q in final.quotes),
        "in_answer": contains_answer(final.answer, answers),
        "markers": len(markers),
        "valid_markers": sum(n in numbers for n in markers),
        "cites": bool(markers),
        "quotes": len(final.quotes),
        "actions": len(final.trace),
        "seconds": final.timings.total_s,
        "answer": final.answer,
    }


async def evaluate(
    settings: Settings, questions: list[dict[str, object]]
) -> list[dict[str, object]]:
    engine = await asyncio.to_thread(build_engine, settings)
    webgpt = build_webgpt(settings, engine)
    rows = []
    try:
        for i, item in enumerate(questions, start=1):
            events = webgpt.stream(str(item["question"]))
            final = None
            async for event in events:
                final = event if isinstance(event, FinalEvent) else final
            assert final is not None
            row = {"id": item["id"], **score(final, list(item["answers"]))}  # type: ignore[call-overload]
            rows.append(row)
            found = f"quote={row['in_quote']!s:5} answer={row['in_answer']!s:5}"
            print(f"{i:4d} {row['seconds']:5.1f}s {found} {final.answer[:70]!r}", file=sys.stderr)
    finally:
        await webgpt.aclose()
        engine.close()
    return rows


def report(rows: list[dict[str, object]], model: str, policy: str) -> str:
    n = len(rows)
    markers = sum(int(r["markers"]) for r in rows)  # type: ignore[call-overload]
    valid = sum(int(r["valid_markers"]) for r in rows)  # type: ignore[call-overload]
    seconds = [float(r["seconds"]) for r in rows]  # type: ignore[arg-type]

    def share(key: str) -> str:
        return f"{100 * sum(bool(r[key]) for r in rows) / n:.1f}%"

    lines = [
        f"WebGPT mode on SQuAD dev ({n} questions, local corpus of 2,067 pages), model {model}, "
        f"policy {policy}",
        "| gold answer in a quote | gold answer in the answer | citation validity "
        "| answers citing | quotes / question | seconds / question (median) |",
        "|---|---|---|---|---|---|",
        f"| {share('in_quote')} | {share('in_answer')} | "
        f"{100 * valid / markers if markers else 100:.1f}% ({valid}/{markers} markers) | "
        f"{share('cites')} | {statistics.mean(int(r['quotes']) for r in rows):.1f} | "  # type: ignore[call-overload]
        f"{statistics.median(seconds):.1f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="first N questions (0: all)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--policy", choices=["builtin", "model"], default="builtin")
    args = parser.parse_args()
    with (DATA / "squad_questions_dev.jsonl").open(encoding="utf-8") as handle:
        questions = [json.loads(line) for line in handle if line.strip()]
    if args.limit:
        questions = questions[: args.limit]
    overrides = {"model": args.model} if args.model else {}
    settings = Settings(
        tools=["Search"],
        search_backend="local",
        search_corpus=DATA / "squad_passages.jsonl",
        webgpt_policy=args.policy,
        **overrides,
    )
    started = time.perf_counter()
    rows = asyncio.run(evaluate(settings, questions))
    table = report(rows, settings.model, args.policy)
    print(table)
    print(f"total {time.perf_counter() - started:.0f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "webgpt.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
