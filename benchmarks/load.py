"""Load on the running service: N concurrent clients, each asking over streamed `/v1/ask`.

Starts `agent-server serve` on a free loopback port with the default model (or uses --url),
then for each concurrency level runs that many clients at once, each asking --rounds questions
back to back, and prints per level: answers/s, generated tokens/s, p50/p99 latency, p50/p99
time to first token, and the responses by status; then the server process's resident memory
(VmRSS, and its peak VmHWM, from /proc) once the model is loaded and again after answering.
Below the queue bound (active + queued answers) every request must succeed; above it the
overflow must get 429, never a 5xx.

    python benchmarks/load.py [--levels 1 2 4 16] [--rounds 2] [--url http://host:port]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

QUESTIONS = [
    "What is 1234 * 5678?",
    "What is 98765 + 43210 - 12345?",
    "What is 7452 divided by 36?",
    "What is (456 + 789) * 12?",
]


@dataclass
class Level:
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    tokens: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)

    @property
    def answers_per_s(self) -> float:
        return self.statuses[200] / self.seconds

    def figures(self) -> dict[str, object]:
        return {
            "clients": self.clients,
            "answers": self.statuses[200],
            "seconds": self.seconds,
            "answers_per_s": self.answers_per_s,
            "tokens_per_s": self.tokens / self.seconds,
            "latency_p50_s": median(self.latencies),
            "latency_p99_s": percentile(self.latencies, 0.99),
            "first_token_p50_s": median(self.first_tokens),
            "first_token_p99_s": percentile(self.first_tokens, 0.99),
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
        }


@dataclass
class Memory:
    """The server process's resident memory in MiB, from /proc/<pid>/status."""

    rss_mib: float  # VmRSS: resident now
    peak_mib: float  # VmHWM: the most it has been resident so far
    anon_mib: float  # RssAnon: of VmRSS, the process's own memory (KV caches, activations, …)
    file_mib: float  # RssFile: of VmRSS, mapped files (memory-mapped weights, as they are read)


@dataclass
class Service:
    url: str
    pid: int | None = None  # None: a service we did not start, whose memory we cannot read
    ready_s: float | None = None  # from start to the first 200 of /readyz

    def memory(self) -> Memory | None:
        if self.pid is None:
            return None
        kib = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                kib[key] = int(value.split()[0])  # "123456 kB"
        mib = {key: n / 1024 for key, n in kib.items()}
        return Memory(mib["VmRSS"], mib["VmHWM"], mib["RssAnon"], mib["RssFile"])


@dataclass
class Figures:
    levels: list[Level]
    ready_s: float | None
    memory_ready: Memory | None  # once the model is loaded, before any answer
    memory_after: Memory | None  # after the warm-up and every level


async def one_answer(client: httpx.AsyncClient, question: str, level: Level) -> None:
    started = time.perf_counter()
    body = {"question": question, "stream": True, "max_new_tokens": 64}
    async with client.stream("POST", "/v1/ask", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            level.statuses[response.status_code] += 1
            return
        first = None
        async for line in response.aiter_lines():
            if first is None and line.startswith("event: token"):
                first = time.perf_counter() - started
            if line.startswith("data: ") and '"usage"' in line:
                level.tokens += json.loads(line[6:])["usage"]["completion_tokens"]
    level.statuses[200] += 1
    level.latencies.append(time.perf_counter() - started)
    if first is not None:
        level.first_tokens.append(first)


async def run_level(url: str, clients: int, rounds: int) -> Level:
    level = Level(clients)
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def user(n: int) -> None:
            for r in range(rounds):
                await one_answer(client, QUESTIONS[(n + r) % len(QUESTIONS)], level)

        started = time.perf_counter()
        await asyncio.gather(*(user(n) for n in range(clients)))
        level.seconds = time.perf_counter() - started
    return level


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(level: Level) -> str:
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(level.statuses.items()))
    return (
        f"| {level.clients} | {level.answers_per_s:.2f} | {level.tokens / level.seconds:.1f} "
        f"| {median(level.latencies):.1f} | {percentile(level.latencies, 0.99):.1f} "
        f"| {median(level.first_tokens):.1f} | {percentile(level.first_tokens, 0.99):.1f} "
        f"| {statuses} |"
    )


@contextmanager
def local_service(env: dict[str, str] | None = None) -> Iterator[Service]:
    """`agent-server serve` with the default model on a free port: with `env` as its
    environment, or the calculator only."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = env or {**os.environ, "AGENT_TOOLS": '["Calculator"]'}
    command = [sys.executable, "-m", "agent_server.cli", "serve", "--port", str(port)]
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.5)
        yield Service(url, server.pid, time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(levels: Sequence[int], rounds: int = 2, url: str | None = None) -> Figures:
    """Each level of concurrent clients in turn, on a service of our own unless `url` is given."""
    with local_service() if url is None else given(url) as service:
        memory_ready = service.memory()
        asyncio.run(run_level(service.url, 1, 1))  # warm-up: the calculator's worker, first prefill
        done = [asyncio.run(run_level(service.url, n, rounds)) for n in levels]
        return Figures(done, service.ready_s, memory_ready, service.memory())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 16])
    parser.add_argument("--rounds", type=int, default=2, help="questions per client")
    parser.add_argument("--url", help="a running service (default: start one)")
    args = parser.parse_args()

    figures = measure(args.levels, args.rounds, args.url)
    print(
        "| clients | answers/s | tokens/s | p50 s | p99 s | first token p50 s | p99 s | responses |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for level in figures.levels:
        print(row(level))
    if figures.memory_ready and figures.memory_after:
        ready, after = figures.memory_ready, figures.memory_after
        print(
            f"\nserver process: ready in {figures.ready_s:.1f} s, "
            f"{ready.rss_mib:,.0f} MiB resident (peak {ready.peak_mib:,.0f}); "
            f"after answering {after.rss_mib:,.0f} MiB (peak {after.peak_mib:,.0f})"
        )


@contextmanager
def given(url: str) -> Iterator[Service]:
    yield Service(url)


if __name__ == "__main__":
    main()
