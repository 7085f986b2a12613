"""Backends against the ceiling: llama.cpp's own decoding, then ours on each backend.

The ceiling is llama-cpp-python's `Llama.create_completion` on the same GGUF (greedy, streamed,
as many threads as ours): what a user of llama.cpp or Ollama would see. Then, for each backend,
the engine's own figures on the same prompts (`Engine.complete`: the full decoding loop, token
choice and detokenizing included, just no tool call):

- decode tokens/s: tokens after the first over the time after the first (prefill excluded);
- prefill tokens/s: a ~450-token prompt read from scratch, up to its first logits;
- time to first token: from the request to the first token of a short prompt;
- per call: from a tool result's tokens to the next logits, 8 tokens into an answer (a remote
  backend sends its text again and relies on the server's prompt cache);
- aggregate tokens/s with 1, 4 and 8 answers at once (each writing up to --tokens tokens):
  llama.cpp decodes their steps in one batch, transformers takes turns on one thread. The
  ceiling's row gives llama.cpp's own: `llama_decode` alone on 1, 4 and 8 sequences, one token
  of each per batch, no token choice at all (what batching can give on this CPU and model).

Every figure is the median of --repeats runs. Each row is measured in a fresh process: llama.cpp's
OpenMP threads, once started from one thread, slow down a context driven from another by about
40% (measured here), and the ceiling and our backend drive theirs from different threads.
`measure` returns the figures; `main` prints the table.

    python benchmarks/backends.py [--repeats 3] [--tokens 96] [--kinds llamacpp transformers ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agent_server.backends import Backend, load_backend
from agent_server.backends.remote import RemoteConfig
from agent_server.core.decoding import Sampling
from agent_server.core.engine import Engine
from agent_server.core.events import FinalEvent, TokenEvent
from agent_server.core.prompts import Prompt, Rendered
from agent_server.model_server import running
from agent_server.models import resolve
from agent_server.settings import Settings

LONG = "Write a long, detailed essay on the history of the Roman Empire, from founding to fall."
TOPICS = ["Rome", "the Nile", "volcanoes", "the Moon", "bees", "glaciers", "printing", "jazz"]
# ~450 tokens of plain text for the prefill figure.
PREFILL = " ".join(
    f"Paragraph {i}: the committee met on day {i} to review the budget, the schedule and the "
    f"list of open questions, and agreed to meet again."
    for i in range(18)
)
LEVELS = (1, 4, 8)
# remote: llama-cpp-python's own server on the same GGUF, started here on loopback.
KINDS = ("llamacpp", "transformers", "remote")


@dataclass
class Row:
    name: str
    decode_tok_s: float
    prefill_tok_s: float
    first_token_ms: float
    aggregate_tok_s: dict[int, float] = field(default_factory=dict)
    splice_ms: float | None = None  # a tool result's tokens to the next logits


@dataclass
class Figures:
    model: str
    threads: int
    tokens: int
    repeats: int
    rows: list[Row]

    @property
    def ceiling(self) -> Row:
        return self.rows[0]

    def share_of_ceiling(self, row: Row) -> float:
        return row.decode_tok_s / self.ceiling.decode_tok_s


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


# -- the ceiling: llama.cpp's own loop ----------------------------------------------------------
def ceiling(gguf: Path, threads: int, tokens: int, repeats: int) -> Row:
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)

    def stream(prompt: str, max_tokens: int) -> tuple[float, float, int]:
        llm.reset()  # no prompt cache between runs: each reads its prompt from scratch
        started = time.perf_counter()
        first = end = started
        count = 0
        for _ in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stream=True):
            end = time.perf_counter()
            first = end if count == 0 else first
            count += 1
        return first - started, end - first, count

    decode, prefill, ttft = [], [], []
    for _ in range(repeats):
        _, after, count = stream(chat(LONG), tokens)
        decode.append((count - 1) / after)
        to_first, _, _ = stream(PREFILL, 1)
        prefill.append(len(llm.tokenize(PREFILL.encode(), add_bos=False)) / to_first)
        ttft.append(stream(chat("Hi!"), 1)[0])
    llm.close()
    batched = {
        n: statistics.median(raw_batches(gguf, threads, n, tokens) for _ in range(repeats))
        for n in LEVELS
    }
    return Row(
        "llama.cpp create_completion (ceiling; at once: llama_decode alone)",
        statistics.median(decode),
        statistics.median(prefill),
        1000 * statistics.median(ttft),
        batched,
    )


def raw_batches(gguf: Path, threads: int, sequences: int, tokens: int) -> float:
    """Tokens/s of bare `llama_decode` steps, each one token of every one of `sequences`
    sequences that share a 32-token prompt: batching's ceiling, with no token choice at all."""
    import llama_cpp
    from llama_cpp import _internals

    model = _internals.LlamaModel(
        path_model=str(gguf), params=llama_cpp.llama_model_default_params(), verbose=False
    )
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = 2048, max(LEVELS), True
    params.n_threads = params.n_threads_batch = threads
    context = _internals.LlamaContext(model=model, params=params, verbose=False)
    batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(entries: list[tuple[int, int, int]]) -> None:  # (token, position, sequence)
        batch.n_tokens = len(entries)
        for i, (token, position, seq) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0], batch.logits[i] = seq, True
        assert llama_cpp.llama_decode(context.ctx, batch) == 0

    try:
        decode([(1000 + i, i, 0) for i in range(32)])
        memory = llama_cpp.llama_get_memory(context.ctx)
        for seq in range(1, sequences):
            llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        started = time.perf_counter()
        for step in range(tokens):
            decode([(2000 + step, 32 + step, seq) for seq in range(sequences)])
        return sequences * tokens / (time.perf_counter() - started)
    finally:
        llama_cpp.llama_batch_free(batch)
        context.close()
        model.close()


# -- ours ---------------------------------------------------------------------------------------
async def complete(engine: Engine, text: str, tokens: int) -> tuple[float, FinalEvent]:
    """Seconds to the first token, and the final event."""
    started = time.perf_counter()
    first = 0.0
    sampling = Sampling(max_new_tokens=tokens)
    async for event in engine.complete(Rendered(text, ()), sampling):
        if isinstance(event, TokenEvent) and not first:
            first = time.perf_counter() - started
        if isinstance(event, FinalEvent):
            return first, event
    raise RuntimeError("no final event")  # pragma: no cover


async def aggregate(engine: Engine, clients: int, tokens: int) -> float:
    prompts = [chat(f"Write a long essay about {TOPICS[i % len(TOPICS)]}.") for i in range(clients)]
    started = time.perf_counter()
    finals = await asyncio.gather(*(complete(engine, p, tokens) for p in prompts))
    generated = sum(f.usage.completion_tokens for _, f in finals)
    return generated / (time.perf_counter() - started)


def splice_ms(backend: Backend) -> float:
    """Milliseconds from a tool result's tokens to the next logits, 8 tokens into an answer:
    what a call costs the backend (a remote one sends the text again)."""
    session = backend.new_session()
    logits = session.feed(backend.encode(chat(LONG)))
    for _ in range(8):
        logits = session.feed([int(logits.argmax())])
    result = backend.encode(" → 4096]")
    started = time.perf_counter()
    session.feed(result)
    return 1000 * (time.perf_counter() - started)


def ours(kind: str, settings: Settings, threads: int, tokens: int, repeats: int) -> Row:
    with contextlib.ExitStack() as stack:
        remote = None
        if kind == "remote":  # llama-cpp-python's server on the same GGUF, on loopback
            source = resolve(settings.model, settings.cache_dir)
            gguf = Path(source.location) / str(source.gguf_file)
            url = stack.enter_context(running(gguf, source.name, threads))
            remote = RemoteConfig(url=url, model=source.name)
        backend, _ = load_backend(
            settings.model,
            settings.cache_dir,
            kind=kind,  # type: ignore[arg-type]
            threads=threads,
            remote=remote,
        )
        engine = Engine(backend, {}, Prompt("chat"), owns_backend=True)
        stack.callback(engine.close)
        asyncio.run(complete(engine, chat("Warm up."), 8))
        decode, prefill, ttft, splices = [], [], [], []
        for _ in range(repeats):
            _, final = asyncio.run(complete(engine, chat(LONG), tokens))
            per_token = final.timings.decode_s / max(1, final.usage.completion_tokens)
            # decode_s runs from the first token on; so does the ceiling's figure.
            decode.append(1 / per_token)
            _, read = asyncio.run(complete(engine, PREFILL, 1))
            prefill.append(read.usage.prompt_tokens / read.timings.prefill_s)
            ttft.append(asyncio.run(complete(engine, chat("Hi!"), 1))[0])
            splices.append(splice_ms(backend))
        levels = {
            n: statistics.median(asyncio.run(aggregate(engine, n, tokens)) for _ in range(repeats))
            for n in LEVELS
        }
    return Row(
        f"agent-server, {kind}",
        statistics.median(decode),
        statistics.median(prefill),
        1000 * statistics.median(ttft),
        levels,
        statistics.median(splices),
    )


def measure(
    settings: Settings,
    kinds: Sequence[str] = KINDS,
    tokens: int = 96,
    repeats: int = 3,
) -> Figures:
    source = resolve(settings.model, settings.cache_dir)
    assert source.gguf_file, "the ceiling needs a GGUF model"
    threads = settings.threads or os.cpu_count() or 1
    gguf = Path(source.location) / source.gguf_file
    spawn = multiprocessing.get_context("spawn")
    rows = []
    with ProcessPoolExecutor(1, mp_context=spawn, max_tasks_per_child=1) as pool:
        rows.append(pool.submit(ceiling, gguf, threads, tokens, repeats).result())
    for kind in kinds:
        with ProcessPoolExecutor(1, mp_context=spawn, max_tasks_per_child=1) as pool:
            rows.append(pool.submit(ours, kind, settings, threads, tokens, repeats).result())
    return Figures(source.name, threads, tokens, repeats, rows)


def markdown(figures: Figures) -> str:
    levels = " | ".join(f"{n} at once tok/s" for n in LEVELS)
    lines = [
        f"model: {figures.model}, {figures.threads} threads, up to {figures.tokens} new tokens, "
        f"median of {figures.repeats} runs\n",
        f"| | decode tok/s | of the ceiling | prefill tok/s | first token ms | per call ms "
        f"| {levels} |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(LEVELS),
    ]
    for row in figures.rows:
        aggregate = " | ".join(
            f"{row.aggregate_tok_s[n]:.1f}" if n in row.aggregate_tok_s else "–" for n in LEVELS
        )
        lines.append(
            f"| {row.name} | {row.decode_tok_s:.1f} | {figures.share_of_ceiling(row):.0%} "
            f"| {row.prefill_tok_s:.0f} | {row.first_token_ms:.0f} "
            f"| {'–' if row.splice_ms is None else f'{row.splice_ms:.0f}'} | {aggregate} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    args = parser.parse_args()
    print(markdown(measure(Settings(), args.kinds, args.tokens, args.repeats)))


if __name__ == "__main__":
    main()
