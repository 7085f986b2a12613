"""Every benchmark behind one command, summed up in one Markdown table: figure | value | how.

Runs, in this order, each script's `measure` function:

- benchmarks/engine.py, the model in this process: its load time, raw decode, the engine's
  overhead per token and per call, and the engine against the naive re-encoding loop;
- benchmarks/backends.py: llama.cpp's own decoding (the ceiling) against ours on each backend
  (llama.cpp, transformers, and remote: llama-cpp-python's server on loopback): decode and
  prefill tokens/s, time to first token, cost per call, tokens/s with 1, 4 and 8 at once;
- benchmarks/tool_latency.py: each tool through `tools.base.invoke`, on the 2,067 SQuAD
  paragraphs only (its 200k-document cases are the script's own table);
- benchmarks/load.py: a service of its own under concurrent clients, and the server process's
  resident memory once the model is loaded and after answering;
- benchmarks/cold_start.py: new `agent-server ask` processes and service restarts, their first
  token with the prompt cache off and on disk;
- benchmarks/lookup.py: prompt-lookup speculative decoding's speed-up on chain-of-thought math
  and on WebGPT answers (a guess of 2 tokens), and whether the answers stayed the same.

Each figure is a median over repeated runs or a ratio; the "how measured" column says which.
The detailed tables are the scripts' own (`python benchmarks/engine.py`, …). All figures,
detailed ones included, are written to benchmarks/results/summary.json (and to --json FILE).
Left out: recall.py and webgpt.py, which measure answers' quality rather than cost.

    python benchmarks/run.py [--quick] [--json FILE]

--quick runs everything once at its smallest, to check that the benchmarks work; its figures
are not worth quoting.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this script sees its own folder on sys.path, not the repository root that
# holds the `benchmarks` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from agent_server.settings import Settings  # noqa: E402
from benchmarks import backends, cold_start, engine, load, lookup, tool_latency  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LOOKUP_DRAFT = 2  # tokens guessed per step: up to 2 llama.cpp keeps its single-token kernel


@dataclass(frozen=True)
class Plan:
    repeats: int = 5  # engine: runs of each scripted answer, of raw decode, of the model load
    tool_queries: int = 150  # SQuAD dev questions asked of Search and Retrieve
    tool_calls: int = 40  # calls per Calculator and Python case
    clients: int = 4  # all four answer at once on llama.cpp (8 may), two on transformers
    rounds: int = 5  # questions each client asks, one after another
    backend_tokens: int = 96  # backends: tokens each answer writes
    backend_repeats: int = 3  # backends: runs of each figure (each backend's transformers
    # row is the slow part: 8 answers at once take turns there)
    cold_runs: int = 3  # cold_start: fresh processes per figure
    lookup_questions: int = 4  # lookup: answers of each kind, each with the lookup off and on


FULL = Plan()
QUICK = Plan(
    repeats=1,
    tool_queries=5,
    tool_calls=5,
    clients=2,
    rounds=1,
    backend_tokens=8,
    backend_repeats=1,
    cold_runs=1,
    lookup_questions=1,
)


@dataclass(frozen=True)
class Figure:
    name: str
    value: str
    how: str


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def engine_figures(f: engine.Figures) -> list[Figure]:
    runs = count(f.runs, "run")
    three = next(a for a in f.answers if a.calls == 3)
    return [
        Figure(
            f"raw decode, {f.model} on {f.backend}",
            f"{f.decode_tok_s:.1f} tokens/s",
            f"median of {runs} of {engine.DECODE_STEPS} one-token forward passes",
        ),
        Figure(
            "model load",
            f"{f.load_s:.2f} s",
            f"median of {runs}: tokenizer and weights, the libraries already imported",
        ),
        Figure(
            "engine overhead per ordinary token",
            f"{f.token_overhead_ms:.2f} ms",
            "median gap between one forward pass and the next, over every token of "
            f"{runs} of the 0-, 1- and 3-call answers",
        ),
        Figure(
            "engine overhead per call",
            f"{f.call_overhead_ms:.1f} ms",
            "median gap from a call's closing token to the forward pass of its result "
            "(scan, tool run, splice), same runs",
        ),
        Figure(
            "naive re-encoding loop / engine, answer with 3 calls",
            f"{three.naive_over_engine:.2f}×",
            f"ratio of median wall times ({three.naive_s:.2f} s / {three.engine_s:.2f} s), "
            f"{runs} each, the same forced tokens and calls",
        ),
    ]


def backend_figures(f: backends.Figures) -> list[Figure]:
    runs = f"median of {count(f.repeats, 'run')}"
    ceiling, ours = f.ceiling, f.rows[1:]
    figures = [
        Figure(
            "llama.cpp decode, the ceiling",
            f"{ceiling.decode_tok_s:.1f} tokens/s",
            f"llama-cpp-python's create_completion, greedy, streamed; {runs}",
        )
    ]
    levels = " / ".join(str(n) for n in backends.LEVELS)
    for row in ours:
        kind = row.name.split(", ")[-1]
        aggregate = " / ".join(f"{row.aggregate_tok_s[n]:.1f}" for n in backends.LEVELS)
        figures += [
            Figure(
                f"decode on {kind}",
                f"{row.decode_tok_s:.1f} tokens/s ({f.share_of_ceiling(row):.0%} of the ceiling)",
                f"Engine.complete: the whole loop, token choice included; {runs}",
            ),
            Figure(
                f"prefill / first token on {kind}",
                f"{row.prefill_tok_s:.0f} tokens/s / {row.first_token_ms:.0f} ms",
                f"a ~450-token prompt from scratch / a short chat prompt; {runs}",
            ),
            Figure(
                f"per call on {kind}",
                f"{row.splice_ms:.0f} ms",
                f"a tool result's tokens to the next logits, 8 tokens into an answer; {runs}",
            ),
            Figure(
                f"{levels} answers at once on {kind}",
                f"{aggregate} tokens/s",
                f"all answers' tokens / wall time, up to {f.tokens} tokens each; {runs}",
            ),
        ]
    return figures


def tool_figures(f: tool_latency.Figures) -> list[Figure]:
    figures = []
    for row in f.rows:
        if row.case == "cache hit":
            continue
        case = row.case.split(" (built in")[0]  # the build time is not a call's
        errors = f", {row.errors} errors" if row.errors else ""
        figures.append(
            Figure(
                f"{row.tool} call, {case}",
                f"{row.p50_ms:.1f} ms",
                f"median of {len(row.seconds)} calls through tools.base.invoke{errors}",
            )
        )
    return figures


def service_figures(f: load.Figures, rounds: int) -> list[Figure]:
    level = f.levels[0]
    asked = f"{count(level.clients, 'client')} × {count(rounds, 'question')}"
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(level.statuses.items()))
    figures = [
        Figure(
            f"service throughput, {count(level.clients, 'client')}",
            f"{level.answers_per_s:.2f} answers/s",
            f"answers / wall time; {asked}, streamed /v1/ask, ≤ 64 new tokens, calculator only",
        ),
        Figure(
            f"answer latency p50 / p99, {count(level.clients, 'client')}",
            f"{load.median(level.latencies):.1f} / {load.percentile(level.latencies, 0.99):.1f} s",
            f"over the {len(level.latencies)} answers, request to final event; "
            f"responses {statuses}",
        ),
    ]
    # The weights are memory-mapped: they become resident as the first answers read them, so the
    # figure at /readyz is mostly libraries and tokenizer, and the one after answering the real one.
    where = "server process's VmRSS (peak VmHWM, file-backed RssFile), /proc; not tool workers"
    moments = {
        "model loaded": "at the first 200 of /readyz, before any answer",
        "after answering": f"after the warm-up and the {len(level.latencies)} answers",
    }
    for label, memory in (("model loaded", f.memory_ready), ("after answering", f.memory_after)):
        if memory is not None:
            figures.append(
                Figure(
                    f"service memory, {label}",
                    f"{memory.rss_mib:,.0f} MiB (peak {memory.peak_mib:,.0f}, "
                    f"file-backed {memory.file_mib:,.0f})",
                    f"{moments[label]}; {where}",
                )
            )
    if f.ready_s is not None:
        figures.append(
            Figure(
                "service start to ready",
                f"{f.ready_s:.1f} s",
                "one start of `agent-server serve`: imports, model load, tools",
            )
        )
    return figures


def cold_start_figures(f: cold_start.Figures) -> list[Figure]:
    runs = f"median of {count(len(f.service_on), 'fresh process')} each"
    figures = []
    for question in cold_start.QUESTIONS:
        off = statistics.median(a.first_token_s for a in f.ask_off[question])
        on = statistics.median(a.first_token_s for a in f.ask_on[question])
        figures.append(
            Figure(
                f'`agent-server ask "{question}"`: first token, prompt cache off / on disk',
                f"{off:.2f} / {on:.2f} s",
                f"from the process's start (imports and model load included); {runs}",
            )
        )
    off, on = statistics.median(f.service_off), statistics.median(f.service_on)
    figures.append(
        Figure(
            "service restarted: the first answer's first token, prompt cache off / on disk",
            f"{off:.2f} / {on:.2f} s",
            f"from the request, once /readyz says ready; {runs}",
        )
    )
    return figures


def lookup_figures(f: lookup.Figures) -> list[Figure]:
    figures = []
    for kind, named in (("math", "chain-of-thought math"), ("webgpt", "WebGPT answers")):
        row = f.row(kind, LOOKUP_DRAFT)
        figures.append(
            Figure(
                f"prompt lookup on {f.model}, {named}: speed-up",
                f"{row.speedup:.2f}× ({row.off.tok_s:.1f} → {row.on.tok_s:.1f} tokens/s)",
                f"decode tokens/s on / off, a guess of {LOOKUP_DRAFT} tokens, "
                f"{count(len(row.off.texts), 'greedy answer')} each way; "
                f"{row.chosen:.0%} of guessed tokens chosen, "
                f"{row.identical} of {len(row.off.texts)} answers the same text",
            )
        )
    return figures


def markdown(figures: list[Figure]) -> str:
    lines = ["| figure | value | how measured |", "|---|---:|---|"]
    lines += [f"| {f.name} | {f.value} | {f.how} |" for f in figures]
    return "\n".join(lines)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewest repeats: a smoke test")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = datetime.datetime.now(datetime.UTC)

    progress(f"engine: {count(plan.repeats, 'run')} of each answer")
    try:
        engine_f = engine.measure(Settings(), plan.repeats)
    finally:
        engine.MODEL_THREAD.shutdown()
    progress(f"backends: the ceiling, then ours; {count(plan.backend_repeats, 'run')} of each")
    backends_f = backends.measure(
        Settings(), tokens=plan.backend_tokens, repeats=plan.backend_repeats
    )
    progress(f"tools: {count(plan.tool_calls, 'call')}, {count(plan.tool_queries, 'question')}")
    tools_f = tool_latency.measure(plan.tool_queries, plan.tool_calls, scale=0)
    progress(f"service: {count(plan.clients, 'client')} × {count(plan.rounds, 'question')}")
    service_f = load.measure([plan.clients], plan.rounds)
    progress(f"cold starts: {count(plan.cold_runs, 'fresh process')} per figure")
    cold_f = cold_start.measure(plan.cold_runs)
    progress(f"prompt lookup: {count(plan.lookup_questions, 'answer')} of each kind, off and on")
    lookup_f = lookup.measure(Settings(), plan.lookup_questions, [LOOKUP_DRAFT])

    figures = (
        engine_figures(engine_f)
        + backend_figures(backends_f)
        + tool_figures(tools_f)
        + service_figures(service_f, plan.rounds)
        + cold_start_figures(cold_f)
        + lookup_figures(lookup_f)
    )
    if args.quick:
        progress("a quick run: these figures check that the benchmarks work, nothing more")
    print(markdown(figures))

    everything = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "plan": dataclasses.asdict(plan),
        "summary": [dataclasses.asdict(f) for f in figures],
        "engine": dataclasses.asdict(engine_f),
        "backends": dataclasses.asdict(backends_f),
        "tools": {
            "rows": [row.figures() for row in tools_f.rows],
            "recall": tools_f.recall,
            "questions": tools_f.questions,
            "passages": tools_f.passages,
        },
        "cold_start": dataclasses.asdict(cold_f),
        "lookup": dataclasses.asdict(lookup_f),
        "service": {
            "levels": [level.figures() for level in service_f.levels],
            "ready_s": service_f.ready_s,
            "memory_ready": service_f.memory_ready and dataclasses.asdict(service_f.memory_ready),
            "memory_after": service_f.memory_after and dataclasses.asdict(service_f.memory_after),
        },
    }
    text = json.dumps(everything, indent=1, ensure_ascii=False) + "\n"
    RESULTS.mkdir(exist_ok=True)
    for path in [RESULTS / "summary.json", *([args.json] if args.json else [])]:
        path.write_text(text, encoding="utf-8")
        progress(f"figures written to {path}")


if __name__ == "__main__":
    main()
