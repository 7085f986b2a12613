"""Cold starts: how soon a new process answers, with and without the prompt cache on disk.

A new `agent-server ask` process, or the service after a restart, used to read its whole
prompt (instructions, tools, examples) before the first token. The engine now saves the KV
cache of each prompt's shared start under AGENT_CACHE_DIR/prompts and loads it instead. This
script measures, on the default model and tools:

- `agent-server ask --trace QUESTION` as a new process, for a question with a number (the
  `consensus` strategy: two short reasoning prompts) and a factual one (`toolformer`: the long
  prompt of every tool's description and examples): its first token, counted from the
  process's own start (interpreter, imports and model load included, as its trace line says),
  and the whole run; with the prompt cache off, then on a second run (the first filled it);
- the service (`agent-server serve`): the first answer's first token after it is ready, counted
  from the request, without and with the cache.

Each figure is a median of `--runs` fresh processes. The prompt cache lives in a temporary
AGENT_CACHE_DIR (the model and indexes are linked in), so the user's own cache is left alone.

    python benchmarks/cold_start.py [--runs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from agent_server.settings import Settings  # noqa: E402
from benchmarks import load  # noqa: E402

QUESTIONS = ("What is 1234 * 5678?", "Who wrote Pride and Prejudice?")
FIRST_TOKEN = re.compile(r"\[first token ([0-9.]+) s after the process started\]")


@dataclass(frozen=True)
class Ask:
    first_token_s: float  # from the process's start
    total_s: float  # from spawning it to its exit
    answer: str


@dataclass(frozen=True)
class Figures:
    ask_off: dict[str, list[Ask]]  # by question, prompt cache off
    ask_on: dict[str, list[Ask]]  # prompt cache on disk (a run before filled it)
    service_off: list[float]  # the first answer's first token after the service is ready
    service_on: list[float]


def ask(env: dict[str, str], question: str) -> Ask:
    started = time.perf_counter()
    command = [sys.executable, "-m", "agent_server.cli", "ask", "--trace", question]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    total = time.perf_counter() - started
    found = FIRST_TOKEN.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"agent-server ask failed ({done.returncode}): {done.stderr[-2000:]}")
    return Ask(float(found.group(1)), total, done.stdout.strip())


def service_first_token(env: dict[str, str]) -> float:
    with load.local_service(env) as service:
        level = asyncio.run(load.run_level(service.url, 1, 1))
    if not level.first_tokens:
        raise RuntimeError(f"the service did not answer: {dict(level.statuses)}")
    return level.first_tokens[0]


def environment(cache: Path, prompt_cache: bool) -> dict[str, str]:
    return {
        **os.environ,
        "AGENT_CACHE_DIR": str(cache),
        "AGENT_INDEX_DIR": str(Settings().cache_dir / "index"),
        "AGENT_PROMPT_CACHE": "true" if prompt_cache else "false",
    }


def measure(runs: int = 3) -> Figures:
    real = Settings().cache_dir
    with tempfile.TemporaryDirectory(prefix="cold-start-") as folder:
        cache = Path(folder)
        (cache / "gguf").symlink_to(real / "gguf")  # the assembled model, not a copy of it
        off, on = environment(cache, False), environment(cache, True)
        ask_off = {q: [ask(off, q) for _ in range(runs)] for q in QUESTIONS}
        for question in QUESTIONS:
            ask(on, question)  # fills the cache
        ask_on = {q: [ask(on, q) for _ in range(runs)] for q in QUESTIONS}
        service_off = [service_first_token(off) for _ in range(runs)]
        service_on = [service_first_token(on) for _ in range(runs)]
    return Figures(ask_off, ask_on, service_off, service_on)


def table(figures: Figures) -> str:
    rows: list[tuple[str, list[float], list[float]]] = []
    for question in QUESTIONS:
        off, on = figures.ask_off[question], figures.ask_on[question]
        first = ([a.first_token_s for a in off], [a.first_token_s for a in on])
        rows.append((f'`ask "{question}"`: first token after process start', *first))
        rows.append(
            (
                f'`ask "{question}"`: the whole process',
                [a.total_s for a in off],
                [a.total_s for a in on],
            )
        )
    service = (figures.service_off, figures.service_on)
    rows.append(("service: the first answer's first token after a restart", *service))
    lines = ["| figure | prompt cache off | on disk | saved |", "|---|---:|---:|---:|"]
    for name, off_s, on_s in rows:
        off_m, on_m = statistics.median(off_s), statistics.median(on_s)
        lines.append(f"| {name} | {off_m:.2f} s | {on_m:.2f} s | {off_m - on_m:.2f} s |")
    for question in QUESTIONS:
        answers = {a.answer for a in [*figures.ask_off[question], *figures.ask_on[question]]}
        lines.append(f"\n{question} → {' | '.join(sorted(answers))}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per figure")
    args = parser.parse_args()
    print(table(measure(args.runs)))


if __name__ == "__main__":
    main()
