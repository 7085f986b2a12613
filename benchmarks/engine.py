"""Engine cost on the default model: answers with 0, 1 and 3 calls, engine vs a naive loop.

To compare like with like, the model's token choices are *forced* to a fixed script (every
forward pass is still the real model's), so both loops produce the same tokens and call the same
tools. The naive loop is what smolagents-style agents do: after each tool result, the whole text
so far is encoded again in a fresh context. The engine keeps its KV cache and encodes only the
spliced result.

Figures (medians over --repeats runs; `measure` returns them, `main` prints the table):
- model load: the model (tokenizer and weights) loaded again in a process that has
  imported its libraries already;
- raw decode tok/s: one-token forward passes on a warm session;
- engine / naive wall time for the whole answer (prompt included);
- engine overhead, measured directly as the wall-clock gap between one forward pass and the
  next: after an ordinary token (token choice, detokenizing, scanning, the event-loop hop) and
  after a call closes (the same plus running the tool and encoding its result).

    python benchmarks/engine.py [--model NAME] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from agent_server.backends import Backend, Logits, Session, Vocabulary
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.runtime import build_engine, load_model
from agent_server.settings import Settings

QUESTION = "A shop has 12 boxes of 34 pens, gets 1000 more pens, and packs them in 4 bags."
SCRIPTS = {
    0: ["The shop has 12 boxes of 34 pens, 408 pens, then 1408 pens, so 352 pens a bag."],
    1: ["12 boxes of 34 pens are [Calculator(12*34)", " 408 pens, then 1408, so 352 a bag."],
    3: [
        "12 boxes of 34 pens are [Calculator(12*34)",
        " 408 pens. With 1000 more: [Calculator(408+1000)",
        " 1408. In 4 bags: [Calculator(1408/4)",
        " 352 pens a bag.",
    ],
}


@dataclass
class Clock:
    forward_s: float = 0.0
    token_gaps: list[float] = field(default_factory=list)
    call_gaps: list[float] = field(default_factory=list)
    last_end: float = 0.0


@dataclass
class ForcedBackend:
    """Wraps a real backend; its sessions run the real model but choose the script's tokens."""

    real: Backend
    parts: list[list[int]]
    clock: Clock = field(default_factory=Clock)
    batching = False  # one model thread: each step is timed alone
    prefix_caching = False  # every prompt read in full, as the benchmark times it
    state_key = None

    @property
    def name(self) -> str:
        return self.real.name

    @property
    def vocab(self) -> Vocabulary:
        return self.real.vocab

    def encode(self, text: str) -> list[int]:
        return self.real.encode(text)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.real.decode(token_ids)

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        return self.real.chat_prompt(system, user)

    def new_session(self) -> ForcedSession:
        eos = min(self.real.vocab.eos_ids)
        return ForcedSession(self.real.new_session(), self.parts, self.clock, eos)

    def restore(self, state: bytes, length: int) -> None:
        """Never asked: `state_key` is None, so no session of this backend is saved."""


class ForcedSession:
    def __init__(self, real: Session, parts: list[list[int]], clock: Clock, eos: int) -> None:
        self._real, self._parts, self._clock, self._eos = real, parts, clock, eos
        self._part, self._cursor, self._fed = 0, 0, 0

    @property
    def length(self) -> int:
        return self._real.length

    def feed(self, token_ids: Sequence[int]) -> Logits:
        started = time.perf_counter()
        logits = self._real.feed(token_ids)
        clock = self._clock
        if self._fed:  # after the prompt
            clock.forward_s += time.perf_counter() - started
            gaps = clock.token_gaps if len(token_ids) == 1 else clock.call_gaps
            gaps.append(started - clock.last_end)
        self._fed += 1
        ids = list(token_ids)
        part = self._parts[self._part]
        while ids and self._cursor < len(part) and ids[0] == part[self._cursor]:
            self._cursor, ids = self._cursor + 1, ids[1:]
        if ids and self._fed > 1 and self._part + 1 < len(self._parts):
            self._part, self._cursor = self._part + 1, 0  # a result was spliced in
        part = self._parts[self._part]
        clock.last_end = time.perf_counter()
        forced = np.full_like(logits, -np.inf)
        forced[part[self._cursor] if self._cursor < len(part) else self._eos] = 0.0
        return forced


# Every forward pass runs on this one thread, as in the service: torch's OpenMP pool belongs to
# the calling thread, and two pools on two cores slow each other down by a quarter.
T = TypeVar("T")
MODEL_THREAD = ThreadPoolExecutor(1, thread_name_prefix="model")


def on_model_thread(fn: Callable[[], T]) -> T:
    return MODEL_THREAD.submit(fn).result()


@dataclass
class Answer:
    """One scripted answer, engine and naive loop, over the runs."""

    calls: int
    tokens: int
    engine_s: float  # median wall time, prompt included
    naive_s: float
    naive_over_engine: float  # ratio of the two medians
    token_overhead_ms: float  # median gap after an ordinary token, over every run's gaps
    call_overhead_ms: float | None  # median gap after a call closed (None: no calls)


@dataclass
class Figures:
    model: str
    backend: str  # which backend ran the model ("llamacpp", "transformers")
    runs: int
    load_s: float  # median of `runs` loads of the model, in a process that imported torch already
    first_build_s: float  # build_engine, first in the process: imports, tools and vocab included
    decode_tok_s: float  # median over `runs` of DECODE_STEPS one-token steps
    token_overhead_ms: float  # pooled over every answer's runs
    call_overhead_ms: float
    answers: list[Answer]


DECODE_STEPS = 48


def engine_run(engine: Engine, real: Backend, script: list[str]) -> tuple[float, Clock, int]:
    forced = ForcedBackend(real, [real.encode(p) for p in script])
    bench = Engine(forced, engine.tools, engine.prompt, engine.config, executor=MODEL_THREAD)
    started = time.perf_counter()
    final = asyncio.run(bench.run(QUESTION))
    wall = time.perf_counter() - started
    expected_calls = len(script) - 1
    assert len(final.trace) == expected_calls and all(r.ok for r in final.trace), final.trace
    return wall, forced.clock, final.usage.completion_tokens


def naive_run(engine: Engine, real: Backend, script: list[str]) -> float:
    """Decode each part with a cache, but re-encode everything after every tool result."""
    prompt = engine.prompt.render(real, QUESTION, list(engine.tools.values())).text
    started = time.perf_counter()
    text = prompt
    for i, part in enumerate(script):
        session = real.new_session()
        session.feed(real.encode(text))  # the whole prefix, again
        for token in real.encode(part):
            session.feed([token])
        text += part
        if i + 1 < len(script):
            call = part[part.rindex("[Calculator(") + 12 : -1]
            result = asyncio.run(engine.tools["Calculator"](call))
            text += f" → {result}]"
    return time.perf_counter() - started


def raw_decode(real: Backend, steps: int = DECODE_STEPS) -> float:
    session = real.new_session()
    session.feed(real.encode(QUESTION))
    token = real.encode(" the")[0]
    started = time.perf_counter()
    for _ in range(steps):
        session.feed([token])
    return steps / (time.perf_counter() - started)


def load_time(settings: Settings) -> float:
    """Seconds to load the model alone (tokenizer and weights), dropped again afterwards."""
    started = time.perf_counter()
    backend, _ = load_model(settings)
    seconds = time.perf_counter() - started
    del backend
    gc.collect()
    return seconds


def ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def measure(settings: Settings, repeats: int = 3) -> Figures:
    """Every figure of this benchmark, each a median over `repeats` runs (or a ratio of two)."""
    started = time.perf_counter()
    engine = on_model_thread(lambda: build_engine(settings))
    first_build = time.perf_counter() - started
    real = engine.backend
    assert isinstance(engine.prompt, Prompt)
    try:
        load_s = statistics.median(
            on_model_thread(lambda: load_time(settings)) for _ in range(repeats)
        )
        engine_run(engine, real, SCRIPTS[1])  # warm up: tool worker, allocator, vocab pieces
        rate = statistics.median(on_model_thread(lambda: raw_decode(real)) for _ in range(repeats))
        answers, token_gaps, call_gaps = [], [], []
        for calls, script in SCRIPTS.items():
            runs = [engine_run(engine, real, script) for _ in range(repeats)]
            naive = statistics.median(
                on_model_thread(lambda s=script: naive_run(engine, real, s)) for _ in range(repeats)
            )
            wall = statistics.median(r[0] for r in runs)
            tokens = [g for r in runs for g in r[1].token_gaps]
            closed = [g for r in runs for g in r[1].call_gaps]
            token_gaps += tokens
            call_gaps += closed
            answers.append(
                Answer(
                    calls=calls,
                    tokens=runs[0][2],
                    engine_s=wall,
                    naive_s=naive,
                    naive_over_engine=naive / wall,
                    token_overhead_ms=ms(tokens),
                    call_overhead_ms=ms(closed) if closed else None,
                )
            )
    finally:
        engine.close()
    return Figures(
        model=real.name,
        backend=real.kind,
        runs=repeats,
        load_s=load_s,
        first_build_s=first_build,
        decode_tok_s=rate,
        token_overhead_ms=ms(token_gaps),
        call_overhead_ms=ms(call_gaps),
        answers=answers,
    )


def markdown(figures: Figures) -> str:
    step_ms = 1000 / figures.decode_tok_s
    lines = [
        f"model: {figures.model} ({figures.backend}); raw decode {figures.decode_tok_s:.1f} tok/s "
        f"({step_ms:.0f} ms a step); model load {figures.load_s:.1f} s\n",
        "| calls | tokens | engine s | naive s | naive / engine "
        "| overhead per token ms | overhead per call ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in figures.answers:
        call_ms = "–" if a.call_overhead_ms is None else f"{a.call_overhead_ms:.1f}"
        lines.append(
            f"| {a.calls} | {a.tokens} | {a.engine_s:.2f} | {a.naive_s:.2f} "
            f"| {a.naive_over_engine:.2f}× | {a.token_overhead_ms:.2f} | {call_ms} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(**({"model": args.model} if args.model else {}))
    try:
        print(markdown(measure(settings, args.repeats)))
    finally:
        MODEL_THREAD.shutdown()


if __name__ == "__main__":
    main()
