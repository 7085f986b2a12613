"""The loop at the heart of the product: generate → notice a call → run the tool → splice → go on.

One answer is one backend session. Each chosen token is scanned by the call grammar; the moment
the model closes a call's arguments, generation pauses, the tool runs (async, with a timeout),
` → result]` is fed into the *same* session (only those tokens are encoded; the prefix's KV
cache is kept) and the model continues. Errors the model caused (an unknown tool, bad arguments,
a call over budget, a tool that fails or times out) become results it can read; the answer goes
on. Model steps run on one worker thread, so the event loop is never blocked and concurrent
answers interleave their steps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from agent_server.backends.base import Backend, Session
from agent_server.calls import Call, CallScanner, Malformed, Phase, splice_text, strip_calls
from agent_server.decoding import Detokenizer, Sampling, TokenChooser
from agent_server.errors import BadRequest
from agent_server.events import (
    CallEvent,
    Event,
    FinalEvent,
    ResultEvent,
    Timings,
    TokenEvent,
    Usage,
)
from agent_server.prompts import Prompt, Rendered
from tools.base import Tool, invoke, shown
from tools.registry import close_registry

T = TypeVar("T")


@dataclass(frozen=True)
class EngineConfig:
    max_calls: int = 3
    call_timeout_s: float = 10.0
    # Toolformer's rule: a call may start when `[` is among the k likeliest tokens. 5 gave the
    # default model its calls without forcing them into plain sentences (README, prompts).
    call_top_k: int = 5


class Engine:
    def __init__(
        self,
        backend: Backend,
        tools: Mapping[str, Tool],
        prompt: Prompt,
        config: EngineConfig | None = None,
        executor: ThreadPoolExecutor | None = None,
        *,
        owns_backend: bool = False,
    ) -> None:
        self.backend = backend
        self._owns_backend = owns_backend  # close() frees the model too (the service's engine)
        self.tools = dict(tools)
        self.prompt = prompt
        self.config = config or EngineConfig()
        self.prefixes = PrefixCache(backend)
        # Model steps never run on the loop. A backend that batches takes steps from several
        # threads at once and decodes them together; any other owns one thread, where the steps
        # of concurrent answers take turns.
        threads = backend.parallel if getattr(backend, "batching", False) else 1
        self._executor = executor or ThreadPoolExecutor(threads, thread_name_prefix="model")

    def close(self) -> None:
        """Stop the tools' worker processes and the model threads (and the model, if owned)."""
        close_registry(self.tools)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_backend:
            self.backend.close()

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def run(
        self,
        question: str,
        *,
        sampling: Sampling | None = None,
        tools: list[str] | None = None,
        max_calls: int | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> FinalEvent:
        """Answer `question` and return only the final event."""
        events = self.stream(
            question, sampling=sampling, tools=tools, max_calls=max_calls, history=history
        )
        return await final_event(events)

    async def stream(
        self,
        question: str,
        *,
        sampling: Sampling | None = None,
        tools: list[str] | None = None,
        max_calls: int | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> AsyncGenerator[Event, None]:
        """Answer `question`, yielding events as they happen; the last one is a `FinalEvent`.

        `history` holds the conversation's earlier (question, answer) turns, oldest first; the
        prompt keeps the last few of them (`Prompt.fit_history`).
        """
        sampling = sampling or Sampling()
        chosen = self.select_tools(tools)
        started = time.perf_counter()
        rendered = self.prompt.render(self.backend, question, list(chosen.values()), history)
        limit = self.config.max_calls if max_calls is None else max_calls
        async for event in self._generate(rendered, sampling, chosen, limit, started):
            yield event

    async def complete(
        self, rendered: Rendered, sampling: Sampling | None = None
    ) -> AsyncGenerator[Event, None]:
        """Continue `rendered` as plain text: no call is noticed or run, `[` is just a character.

        For prompts of other tasks (WebGPT's browsing commands and cited answers); the events are
        `TokenEvent`s and a `FinalEvent` whose `answer` is the text as written.
        """
        started = time.perf_counter()
        async for event in self._generate(rendered, sampling or Sampling(), None, 0, started):
            yield event

    async def _generate(
        self,
        rendered: Rendered,
        sampling: Sampling,
        chosen: Mapping[str, Tool] | None,
        max_calls: int,
        started: float,
    ) -> AsyncGenerator[Event, None]:
        """The decoding loop; `chosen` None means no call grammar at all (`complete`)."""
        scan_calls = chosen is not None
        chosen = chosen or {}
        stops = tuple(sampling.stop) + rendered.stop
        prompt_ids = self.backend.encode(rendered.text)
        shared = self.prefixes.usable(rendered.prefix, prompt_ids)
        session = await self._in_worker(lambda: self.prefixes.open(shared))
        chooser = TokenChooser(self.backend.vocab, sampling, tuple(chosen), self.config.call_top_k)
        answer = _Answer(max_calls)
        scanner = CallScanner()
        detok = Detokenizer(self.backend.decode)

        def step(ids: list[int], after_result: bool = False) -> int:
            logits = session.feed(ids)
            phase, name = scanner.phase, scanner.name_so_far
            made = len(answer.trace)
            return chooser.choose(logits, phase, name, answer.calls_left, after_result, made)

        token = await self._in_worker(lambda: step(prompt_ids[len(shared) :]))
        prefill_s = time.perf_counter() - started
        tools_s = 0.0
        stop_reason = "length"
        while answer.generated < sampling.max_new_tokens:
            if token in self.backend.vocab.eos_ids:
                stop_reason = "eos"
                break
            answer.generated += 1
            delta = detok.add(token)
            consumed = scanner.feed(delta, pause_at_call=True) if scan_calls else len(delta)
            answer.text += delta[:consumed]
            if answer.cut_at_stop(stops):
                stop_reason = "stop"
                break
            for chunk in answer.flush(stops):
                yield TokenEvent(chunk)
            feed = [token] if consumed == len(delta) else self.backend.encode(delta[:consumed])
            after_result = scanner.phase is Phase.AFTER_ARGS
            if after_result:
                call = scanner.pending
                yield CallEvent(len(answer.trace), call.name, call.argument)
                record = await self._call(len(answer.trace), call, chosen, answer)
                tools_s += record.duration_s
                answer.trace.append(record)
                yield record
                spliced = splice_text(shown(record.result, record.error))
                scanner.feed(spliced)
                answer.splice(spliced)
                splice_ids = self.backend.encode(spliced)
                answer.spliced += len(splice_ids)
                feed += splice_ids
                detok = Detokenizer(self.backend.decode, context=splice_ids[-4:])
            token = await self._in_worker(lambda ids=feed, r=after_result: step(ids, r))  # type: ignore[misc]

        for chunk in answer.flush((), final=True):
            yield TokenEvent(chunk)
        segments = CallScanner()
        segments.feed(answer.text if scan_calls else "")
        for bad in (s for s in segments.finish() if isinstance(s, Malformed)):
            answer.trace.append(
                ResultEvent(
                    len(answer.trace),
                    bad.text[1:].split("(")[0],
                    bad.text,
                    None,
                    f"malformed call: {bad.reason}",
                    0.0,
                )
            )
        total_s = time.perf_counter() - started
        yield FinalEvent(
            answer=strip_calls(answer.text) if scan_calls else answer.text.strip(),
            text=answer.text,
            trace=tuple(answer.trace),
            usage=Usage(len(prompt_ids), answer.generated, answer.spliced),
            timings=Timings(prefill_s, total_s - prefill_s - tools_s, tools_s, total_s),
            stop_reason=stop_reason,
        )

    def select_tools(self, names: list[str] | None) -> dict[str, Tool]:
        """The tools an answer may use; `BadRequest` naming any that are not registered."""
        if names is None:
            return self.tools
        unknown = sorted(set(names) - set(self.tools))
        if unknown:
            raise BadRequest(f"unknown tools {unknown}; available: {sorted(self.tools)}")
        return {n: self.tools[n] for n in names}

    async def _call(
        self, index: int, call: Call, tools: Mapping[str, Tool], answer: _Answer
    ) -> ResultEvent:
        tool = tools.get(call.name)
        if answer.calls_left <= 0:
            error = f"call limit reached ({answer.max_calls}); answer without tools"
            return ResultEvent(index, call.name, call.argument, None, error, 0.0)
        if tool is None:
            error = f"unknown tool {call.name!r}; tools: {', '.join(sorted(tools)) or 'none'}"
            return ResultEvent(index, call.name, call.argument, None, error, 0.0)
        answer.calls_left -= 1
        outcome = await invoke(tool, call.argument, self.config.call_timeout_s)
        return ResultEvent(
            index, call.name, call.argument, outcome.result, outcome.error, outcome.duration_s
        )


class PrefixCache:
    """Sessions that have read a prompt's shared start (instructions, tools, examples), forked
    for each answer, so only the question and history are encoded per request.

    Used when the backend can fork sessions (`prefix_caching`); the few most recent prefixes are
    kept (one per tool set in use). Runs on the model thread, like every forward pass.
    """

    def __init__(self, backend: Backend, size: int = 4) -> None:
        self._backend = backend
        self._enabled = bool(getattr(backend, "prefix_caching", False))
        self._size = size
        self._sessions: OrderedDict[tuple[int, ...], Session] = OrderedDict()
        # Answers open sessions from several model threads when the backend batches.
        self._lock = threading.Lock()
        self.hits = 0  # answers that started from a cached prefix

    def usable(self, prefix: str, prompt_ids: list[int]) -> list[int]:
        """The prompt's first tokens that are `prefix`'s own, or [] if they can't be shared."""
        if not (self._enabled and prefix):
            return []
        prefix_ids = self._backend.encode(prefix)
        # Tokens can merge across the boundary; then the prefix is not a prefix of the tokens.
        if prompt_ids[: len(prefix_ids)] != prefix_ids or len(prefix_ids) >= len(prompt_ids):
            return []
        return prefix_ids

    def open(self, prefix_ids: list[int]) -> Session:
        """A new session that has read `prefix_ids` (computed once, then copied)."""
        if not prefix_ids:
            return self._backend.new_session()
        with self._lock:
            return self._open(tuple(prefix_ids))

    def _open(self, key: tuple[int, ...]) -> Session:
        base = self._sessions.get(key)
        if base is None:
            base = self._backend.new_session()
            base.feed(list(key))
            self._sessions[key] = base
            while len(self._sessions) > self._size:
                self._sessions.popitem(last=False)
        else:
            self.hits += 1
        self._sessions.move_to_end(key)
        fork: Callable[[], Session] = getattr(base, "fork")  # noqa: B009 (optional method)
        return fork()


async def final_event(events: AsyncIterator[Event]) -> FinalEvent:
    """The `FinalEvent` of an answer's events, consuming the rest."""
    async for event in events:
        if isinstance(event, FinalEvent):
            return event
    raise RuntimeError("the engine ended without a final event")  # pragma: no cover


class _Answer:
    """The growing text of one answer and what has been streamed of it."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.calls_left = max_calls
        self.text = ""
        self.trace: list[ResultEvent] = []
        self.generated = 0
        self.spliced = 0
        self._model_from = 0  # stop strings are searched only in what the model wrote
        self._emitted = 0

    def splice(self, spliced: str) -> None:
        self._emitted = len(self.text) + len(spliced)  # the result travels as a ResultEvent
        self.text += spliced
        self._model_from = len(self.text)

    def cut_at_stop(self, stops: tuple[str, ...]) -> bool:
        region = self.text[self._model_from :]
        hits = [i for i in (region.find(s) for s in stops if s) if i >= 0]
        if not hits:
            return False
        self.text = self.text[: self._model_from + min(hits)]
        return True

    def flush(self, stops: tuple[str, ...], final: bool = False) -> list[str]:
        """Text that is safe to stream: never the start of what may become a stop string."""
        end = len(self.text)
        if not final:
            end -= _held_back(self.text[self._model_from :], stops)
        chunk = self.text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return [chunk] if chunk else []


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
