"""The loop at the heart of the product: generate → notice a call → run the tool → splice → go on.

One answer is one backend session. Each chosen token is scanned by the call grammar; the moment
the model closes a call's arguments, generation pauses, the tool runs (async, with a timeout),
the result is fed into the *same* session (only those tokens are encoded; the prefix's KV cache
is kept) and the model continues. Errors the model caused (an unknown tool, bad arguments, a
call over budget, a tool that fails or times out) become results it can read; the answer goes
on. Model steps run on worker threads, so the event loop is never blocked and concurrent
answers interleave their steps (a batching backend decodes them together).

How the model is asked to reason is a `strategies.Strategy`, chosen per answer; with several
samples, the prompt is read once and forked, and the samples' values are put to a vote
(`consistency`).

Long (over 300 lines) because planning, the decoding loop, samples and a consensus's rounds
share the session and thread handling; the rules they apply live in `decoding`, `grammar`,
`strategies` and `consistency`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypedDict, TypeVar, Unpack

import numpy as np

from agent_server.backends.base import Backend, Logits, Session
from agent_server.core import consistency, strategies
from agent_server.core.answer import AnswerStream
from agent_server.core.decoding import Detokenizer, Sampling, TokenChooser
from agent_server.core.events import (
    AnswerEvent,
    CallEvent,
    ClientCall,
    Event,
    FinalEvent,
    ResultEvent,
    StopReason,
    Timings,
    TokenEvent,
    Usage,
)
from agent_server.core.grammar import (
    Call,
    CallScanner,
    Malformed,
    Phase,
    parse,
    splice_text,
    strip_calls,
)
from agent_server.core.lookup import Feeder, LookupConfig, LookupStats
from agent_server.core.prefix_cache import PrefixCache, SavedPrefixes
from agent_server.core.prompts import Prompt, Rendered
from agent_server.core.strategies import Strategy
from agent_server.core.structured import AnswerFormat, AnswerGrammar, Grammars
from agent_server.errors import BadRequest
from tools.base import Tool, invoke, shown
from tools.registry import close_registry

T = TypeVar("T")


class AnswerOptions(TypedDict, total=False):
    """`Engine.stream`'s options, for the calls that take them on (`Engine.run`)."""

    strategy: str | None
    samples: int | None
    sampling: Sampling | None
    tools: list[str] | None
    max_calls: int | None
    history: Sequence[tuple[str, str]]
    functions: Sequence[Tool]
    continuation: str
    prefill: str
    answer_format: AnswerFormat | None


JSON_TOKENS = 1024  # an answer in a JSON format, unless the request sets its budget


@dataclass(frozen=True)
class EngineConfig:
    max_calls: int = 3
    call_timeout_s: float = 10.0
    # Toolformer's rule: a call may start when `[` is among the k likeliest tokens. 5 gave the
    # default model its calls without forcing them into plain sentences (README, prompts).
    call_top_k: int = 5
    # How an answer reasons when the request does not say (`strategies.CHOICES`), and with how
    # many samples; several samples are drawn at `sample_temperature` unless the request sets
    # a temperature.
    strategy: str = "toolformer"
    samples: int = 1
    sample_temperature: float = 0.7
    # Prompt-lookup speculative decoding (`lookup`) on backends whose sessions can check a
    # guess; None: off.
    lookup: LookupConfig | None = None


@dataclass(frozen=True)
class Plan:
    """Everything one answer's decoding needs, settled before it starts."""

    strategy: Strategy
    tools: Mapping[str, Tool]
    sampling: Sampling
    max_calls: int
    call_top_k: int
    samples: int
    scan_calls: bool = True  # False: plain text, `[` is just a character (`Engine.complete`)
    question: str = ""
    # The client's functions among `tools`: a call to one ends the answer (`ClientCall`).
    client: frozenset[str] = frozenset()
    # Text the answer already holds when decoding starts: the calls the client ran, with their
    # results spliced in, and a call opened for the model when the client requires one.
    continuation: str = ""
    prefill: str = ""
    # The JSON the whole answer must be (`response_format`); the service's tools are then off.
    answer_format: AnswerFormat | None = None

    @property
    def fence(self) -> str | None:
        fence = self.strategy.fence
        return fence if fence is not None and fence in self.tools else None

    @property
    def inline(self) -> bool:
        # With no tool enabled there is nothing to call: `[` is text, not a call to refuse.
        return self.strategy.inline and bool(self.tools)


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
        saved_prefixes: SavedPrefixes | None = None,
    ) -> None:
        self.backend = backend
        self._owns_backend = owns_backend  # close() frees the model too (the service's engine)
        self.tools = dict(tools)
        self.prompt = prompt  # toolformer's; the other strategies' prompts take its style
        self.prompts = {
            name: prompt if name == "toolformer" else Prompt.for_strategy(strategy, prompt)
            for name, strategy in strategies.STRATEGIES.items()
            if not strategy.members  # an ensemble asks through its members' prompts
        }
        self.config = config or EngineConfig()
        self.prefixes = PrefixCache(backend, saved=saved_prefixes)
        self.lookup_totals = LookupStats()  # every answer's guesses, for the benchmark
        self.grammars = Grammars(backend.vocab, backend.encode)  # its token table: at first use
        # Model steps never run on the loop. A backend that batches takes steps from several
        # threads at once and decodes them together; any other owns one thread, where the steps
        # of concurrent answers take turns.
        threads = backend.parallel if backend.batching else 1
        self._executor = executor or ThreadPoolExecutor(threads, thread_name_prefix="model")

    def close(self) -> None:
        """Stop the tools' worker processes and the model threads (and the model, if owned)."""
        close_registry(self.tools)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_backend:
            self.backend.close()

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def run(self, question: str, **options: Unpack[AnswerOptions]) -> FinalEvent:
        """Answer `question` (with `stream`'s options) and return only the final event."""
        return await final_event(self.stream(question, **options))

    def plan(
        self,
        question: str,
        *,
        strategy: str | None = None,
        samples: int | None = None,
        sampling: Sampling | None = None,
        tools: list[str] | None = None,
        max_calls: int | None = None,
        functions: Sequence[Tool] = (),
        continuation: str = "",
        prefill: str = "",
        answer_format: AnswerFormat | None = None,
    ) -> Plan:
        """How `question` will be answered; `BadRequest` for a choice that cannot be honoured.

        `functions` are the client's (OpenAI's `tools`): written inline like the service's own,
        but a call to one ends the answer for the client to run; they need the toolformer
        strategy, which `auto` then chooses. So does `answer_format`: the answer is then that
        JSON (or a call of one of `functions`), the service's tools left out."""
        available = self.select_tools(tools)
        if answer_format is not None:
            if samples not in (None, 1):
                raise BadRequest("an answer in a JSON format is one sample")
            available = {}
            question = f"{question}\n\n{answer_format.instruction()}"
        if functions or answer_format is not None:
            return self._plan_for_client(
                question,
                strategy,
                sampling,
                available,
                functions,
                continuation,
                prefill,
                max_calls,
                answer_format,
            )
        chosen = strategies.resolve(strategy or self.config.strategy, question, list(available))
        if chosen.tools is not None:
            available = {name: available[name] for name in chosen.tools}
        if samples is None:
            # The default number of samples is for the default way of reasoning only (an
            # ensemble votes among its members instead).
            samples = self.config.samples if strategy is None and not chosen.members else 1
        if not 1 <= samples <= strategies.MAX_SAMPLES:
            raise BadRequest(f"samples must be from 1 to {strategies.MAX_SAMPLES}")
        if samples > 1 and chosen.members:
            raise BadRequest(f"strategy {chosen.name!r} votes among its members: one sample")
        sampling = sampling or Sampling()
        if sampling.max_new_tokens is None and not chosen.members:
            # (An ensemble's members each take their own budget unless the request sets one.)
            sampling = replace(sampling, max_new_tokens=chosen.max_new_tokens)
        if samples > 1 and sampling.temperature == 0:
            sampling = replace(sampling, temperature=self.config.sample_temperature)
        calls = next(
            n for n in (max_calls, chosen.max_calls, self.config.max_calls) if n is not None
        )
        top_k = chosen.call_top_k if chosen.call_top_k is not None else self.config.call_top_k
        return Plan(chosen, available, sampling, calls, top_k, samples, question=question)

    def _plan_for_client(
        self,
        question: str,
        strategy: str | None,
        sampling: Sampling | None,
        available: Mapping[str, Tool],
        functions: Sequence[Tool],
        continuation: str,
        prefill: str,
        max_calls: int | None,
        answer_format: AnswerFormat | None,
    ) -> Plan:
        if strategy not in (None, strategies.AUTO, "toolformer"):
            what = "the client's functions are called" if functions else "JSON is answered"
            raise BadRequest(f"{what} in strategy 'toolformer', not {strategy!r}")
        clash = sorted(f.name for f in functions if f.name in available)
        if clash:
            raise BadRequest(f"functions named like this service's tools: {clash}")
        chosen = strategies.TOOLFORMER
        sampling = sampling or Sampling()
        if sampling.max_new_tokens is None:
            # A JSON object runs longer than toolformer's one or two sentences.
            budget = chosen.max_new_tokens if answer_format is None else JSON_TOKENS
            sampling = replace(sampling, max_new_tokens=budget)
        tools = {**available, **{f.name: f for f in functions}}
        calls = max_calls if max_calls is not None else self.config.max_calls
        top_k = self.config.call_top_k
        client = frozenset(f.name for f in functions)
        return Plan(
            chosen,
            tools,
            sampling,
            calls,
            top_k,
            1,
            question=question,
            client=client,
            continuation=continuation,
            prefill=prefill,
            answer_format=answer_format,
        )

    async def stream(
        self,
        question: str,
        *,
        strategy: str | None = None,
        samples: int | None = None,
        sampling: Sampling | None = None,
        tools: list[str] | None = None,
        max_calls: int | None = None,
        history: Sequence[tuple[str, str]] = (),
        functions: Sequence[Tool] = (),
        continuation: str = "",
        prefill: str = "",
        answer_format: AnswerFormat | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Answer `question`, yielding events as they happen; the last one is a `FinalEvent`.

        `strategy` is one of `strategies.CHOICES` (None: the service's default); `history` holds
        the conversation's earlier (question, answer) turns, oldest first; the prompt keeps the
        last few of them (`Prompt.fit_history`).
        """
        plan = self.plan(
            question,
            strategy=strategy,
            samples=samples,
            sampling=sampling,
            tools=tools,
            max_calls=max_calls,
            functions=functions,
            continuation=continuation,
            prefill=prefill,
            answer_format=answer_format,
        )
        async for event in self.follow(plan, history):
            yield event

    def follow(
        self, plan: Plan, history: Sequence[tuple[str, str]] = ()
    ) -> AsyncGenerator[Event, None]:
        """Answer as `plan` (from `plan`) says: for a caller that planned first, to refuse a bad
        request before any work or to show how the answer will be made."""
        question = plan.question
        if plan.strategy.members:
            return self._consensus(question, plan, history)
        prompt = self.prompts[plan.strategy.name]
        tools = list(plan.tools.values())
        rendered = prompt.render(
            self.backend, question, tools, history, functions=bool(plan.client)
        )
        return self._sample(rendered, plan) if plan.samples > 1 else self._answer(rendered, plan)

    async def complete(
        self, rendered: Rendered, sampling: Sampling | None = None
    ) -> AsyncGenerator[Event, None]:
        """Continue `rendered` as plain text: no call is noticed or run, `[` is just a character.

        For prompts of other tasks (WebGPT's browsing commands and cited answers); the events are
        `TokenEvent`s and a `FinalEvent` whose `answer` is the text as written.
        """
        sampling = sampling or Sampling()
        if sampling.max_new_tokens is None:
            sampling = replace(sampling, max_new_tokens=strategies.TOOLFORMER.max_new_tokens)
        plan = Plan(strategies.TOOLFORMER, {}, sampling, 0, 0, 1, scan_calls=False)
        async for event in self._answer(rendered, plan):
            yield event

    async def _answer(
        self, rendered: Rendered, plan: Plan, sample: int | None = None
    ) -> AsyncGenerator[Event, None]:
        started = time.perf_counter()
        if plan.continuation or plan.prefill:  # read with the prompt, as the answer's start
            rendered = replace(rendered, text=rendered.text + plan.continuation + plan.prefill)
        prompt_ids = self.backend.encode(rendered.text)
        session, logits = await self._prefill(rendered, prompt_ids)
        reading = _Reading(len(prompt_ids), started, time.perf_counter() - started)
        events = self._decode(
            session, prompt_ids, logits, rendered.stop, plan, reading, sample=sample
        )
        async for event in events:
            yield event

    async def _prefill(self, rendered: Rendered, prompt_ids: list[int]) -> tuple[Session, Logits]:
        """A session that has read the prompt (its shared start from the cache), and its logits."""
        shared = self.prefixes.usable(rendered.prefix, prompt_ids)
        session = await self._in_worker(lambda: self.prefixes.open(shared))
        logits = await self._in_worker(lambda: session.feed(prompt_ids[len(shared) :]))
        return session, logits

    async def _sample(self, rendered: Rendered, plan: Plan) -> AsyncGenerator[Event, None]:
        """`plan.samples` answers from one reading of the prompt, and the vote on their values."""
        started = time.perf_counter()
        prompt_ids = self.backend.encode(rendered.text)
        first, logits = await self._prefill(rendered, prompt_ids)
        sessions = [first]
        for _ in range(plan.samples - 1):
            sessions.append(await self._in_worker(first.fork))
        reading = _Reading(len(prompt_ids), started, time.perf_counter() - started)
        seed = plan.sampling.seed
        seeds = [None if seed is None else seed + i for i in range(plan.samples)]
        decodes = [
            self._decode(
                s,
                prompt_ids,
                logits,
                rendered.stop,
                plan,
                reading,
                sample=i,
                seed=seeds[i],
                logprobs=True,
            )
            for i, s in enumerate(sessions)
        ]
        finals: dict[int, FinalEvent] = {}
        async for event in self._gathered(decodes, finals):
            yield event
        async for event in self._voted([finals[i] for i in range(plan.samples)], reading, plan):
            yield event

    async def _consensus(
        self, question: str, plan: Plan, history: Sequence[tuple[str, str]]
    ) -> AsyncGenerator[Event, None]:
        """The ensemble's rounds, each asked only while the answers so far hold no majority."""
        started = time.perf_counter()
        tools = list(plan.tools)
        finals: dict[int, FinalEvent] = {}
        for names in plan.strategy.rounds:
            start = len(finals)
            plans = [
                self.plan(question, strategy=name, sampling=plan.sampling, tools=tools)
                for name in names
            ]
            answers = [self._member(question, p, history, start + i) for i, p in enumerate(plans)]
            async for event in self._gathered(answers, finals, offset=start):
                yield event
            if consistency.decided([finals[i] for i in range(len(finals))]):
                break
        ordered = [finals[i] for i in range(len(finals))]
        prompt_tokens = sum(f.usage.prompt_tokens for f in ordered)
        reading = _Reading(prompt_tokens, started, max(f.timings.prefill_s for f in ordered))
        async for event in self._voted(ordered, reading, plan, by_order=True):
            yield event

    def _member(
        self, question: str, plan: Plan, history: Sequence[tuple[str, str]], index: int
    ) -> AsyncGenerator[Event, None]:
        prompt = self.prompts[plan.strategy.name]
        rendered = prompt.render(self.backend, question, list(plan.tools.values()), history)
        return self._answer(rendered, plan, sample=index)

    async def _gathered(
        self,
        answers: Sequence[AsyncGenerator[Event, None]],
        finals: dict[int, FinalEvent],
        offset: int = 0,
    ) -> AsyncGenerator[Event, None]:
        """The answers' events as they come (their finals kept in `finals`, by sample)."""
        async for index, event in consistency.merge(answers):
            if isinstance(event, FinalEvent):
                finals[offset + index] = event
            else:
                yield event

    async def _voted(
        self, finals: list[FinalEvent], reading: _Reading, plan: Plan, *, by_order: bool = False
    ) -> AsyncGenerator[Event, None]:
        """The winning answer, as the reader's answer and as the final event with every vote."""
        winner, votes = consistency.tally(finals, by_order=by_order)
        best = finals[winner]
        total_s = time.perf_counter() - reading.started
        if best.answer:
            yield AnswerEvent(best.answer)
        yield replace(
            best,
            strategy=plan.strategy.name,
            votes=votes,
            sample=winner,
            usage=Usage(
                reading.prompt_tokens,
                sum(f.usage.completion_tokens for f in finals),
                sum(f.usage.spliced_tokens for f in finals),
            ),
            timings=Timings(
                reading.prefill_s,
                total_s - reading.prefill_s - best.timings.tools_s,
                best.timings.tools_s,
                total_s,
            ),
        )

    async def _decode(
        self,
        session: Session,
        prompt_ids: Sequence[int],
        logits: Logits,
        stops: tuple[str, ...],
        plan: Plan,
        reading: _Reading,
        *,
        sample: int | None = None,
        seed: int | None = None,
        logprobs: bool = False,
    ) -> AsyncGenerator[Event, None]:
        """The decoding loop, from the logits after the prompt to the final event."""
        sampling = plan.sampling if seed is None else replace(plan.sampling, seed=seed)
        stops = tuple(sampling.stop) + stops
        # The tools written inline, whose calls the decoding rules shape (a fenced call is not).
        names = tuple(plan.tools) if plan.scan_calls and plan.inline else ()
        chooser = TokenChooser(self.backend.vocab, sampling, names, plan.call_top_k)
        answer = _Answer(plan.max_calls)
        scanner = CallScanner(plan.fence, inline=plan.inline)
        detok = Detokenizer(self.backend.decode)
        # The reader's answer as it grows; one of several samples has none (the vote decides).
        reader = (
            AnswerStream(plan.fence, plan.inline) if plan.scan_calls and sample is None else None
        )
        if plan.prefill:  # a call opened for the model: the grammar is inside it from the start
            scanner.feed(plan.prefill)
            answer.start_with(plan.prefill)
            if reader is not None:
                reader.add(plan.prefill)

        structure = self._structure(plan)
        # The client's calls already answered count as calls made: the decoding rules treat the
        # text after their results as they treat it after the service's own.
        answered = sum(isinstance(s, Call) for s in parse(plan.continuation)) if plan.inline else 0

        def choose(logits: Logits, after_result: bool) -> int:
            phase, name = scanner.phase, scanner.name_so_far
            grammar = structure.current(phase, name, scanner.args_so_far) if structure else None
            if grammar is not None:  # JSON: the grammar's tokens only, no call rule
                token = chooser.pick(grammar.mask(logits))
                grammar.advance(token)
            else:
                made = answered + len(answer.trace)
                token = chooser.choose(logits, phase, name, answer.calls_left, after_result, made)
            if logprobs:
                answer.logprob += _logprob(logits, token)
            return token

        # The model's steps, each reading a guess of the next tokens where the lookup is on.
        feeder = Feeder.around(session, prompt_ids, self.config.lookup)

        def step(ids: list[int], after_result: bool) -> int:
            return choose(feeder.feed(ids), after_result)

        # Right after a client's result, as after any result: no call and no end of turn yet.
        resumed = answered > 0 and plan.continuation.endswith("]") and not plan.prefill
        token = await self._in_worker(lambda: choose(logits, resumed))
        tools_s = 0.0
        stop_reason: StopReason = "length"
        budget = sampling.max_new_tokens or strategies.TOOLFORMER.max_new_tokens
        while answer.generated < budget:
            if token in self.backend.vocab.eos_ids:
                stop_reason = "eos"
                break
            answer.generated += 1
            delta = detok.add(token)
            if plan.scan_calls:
                consumed = scanner.feed(delta, pause_at_call=True)
            else:
                consumed = len(delta)
            answer.text += delta[:consumed]
            if answer.cut_at_stop(stops):
                stop_reason = "stop"
                break
            for chunk in answer.flush(stops):
                yield TokenEvent(chunk, sample)
                if reader is not None and (said := reader.add(chunk)):
                    yield AnswerEvent(said)
            feed = [token] if consumed == len(delta) else self.backend.encode(delta[:consumed])
            after_result = scanner.phase is Phase.AFTER_ARGS
            if after_result:
                call = scanner.pending
                yield CallEvent(len(answer.trace), call.name, call.argument, sample)
                if call.name in plan.client:  # the client runs it and sends the result back
                    answer.client_call = ClientCall(call.name, call.argument)
                    stop_reason = "tool_calls"
                    break
                record = await self._call(len(answer.trace), call, plan.tools, answer, sample)
                tools_s += record.duration_s
                answer.trace.append(record)
                yield record
                spliced = splice_text(shown(record.result, record.error), fenced=call.fenced)
                scanner.feed(spliced)
                answer.splice(spliced)
                if reader is not None and (said := reader.add(spliced)):
                    yield AnswerEvent(said)
                splice_ids = self.backend.encode(spliced)
                answer.spliced += len(splice_ids)
                feed += splice_ids
                detok = Detokenizer(self.backend.decode, context=splice_ids[-4:])
            token = await self._in_worker(lambda ids=feed, r=after_result: step(ids, r))  # type: ignore[misc]

        if feeder.speculator is not None:  # guesses not chosen leave the session
            await self._in_worker(feeder.speculator.forget_guesses)
            self.lookup_totals.add(feeder.speculator.stats)
        for chunk in answer.flush((), final=True):
            yield TokenEvent(chunk, sample)
            if reader is not None:
                reader.add(chunk)
        final = self._final(answer, plan, reading, stop_reason, tools_s, sample, logprobs)
        if not plan.scan_calls:
            if final.answer:  # plain text: the answer is the text, known whole at its end
                yield AnswerEvent(final.answer)
        elif reader is not None and (rest := reader.finish(final.answer)):
            yield AnswerEvent(rest)
        yield final

    def _final(
        self,
        answer: _Answer,
        plan: Plan,
        reading: _Reading,
        stop_reason: StopReason,
        tools_s: float,
        sample: int | None,
        logprobs: bool,
    ) -> FinalEvent:
        if plan.scan_calls:
            # A client's call ends the text open (its result is the client's to send): not
            # malformed, so only what comes before it is checked.
            text = answer.text
            checked = text if answer.client_call is None else text[: text.rfind("[")]
            bad = _malformed(checked, plan.fence, plan.inline, len(answer.trace), sample)
            answer.trace.extend(bad)
        text = answer.text
        reading_value = plan.scan_calls and plan.strategy is not None
        value = (
            strategies.read_value(plan.strategy, text, answer.trace, plan.question)
            if reading_value
            else None
        )
        total_s = time.perf_counter() - reading.started
        return FinalEvent(
            answer=strip_calls(text, plan.fence, inline=plan.inline)
            if plan.scan_calls
            else text.strip(),
            text=text,
            trace=tuple(answer.trace),
            usage=Usage(reading.prompt_tokens, answer.generated, answer.spliced),
            timings=Timings(
                reading.prefill_s, total_s - reading.prefill_s - tools_s, tools_s, total_s
            ),
            stop_reason=stop_reason,
            client_call=answer.client_call,
            strategy=plan.strategy.name,
            value=value.value if value is not None else None,
            checks=value.checks if value is not None else (),
            sample=sample,
            mean_logprob=answer.logprob / max(1, answer.generated) if logprobs else None,
        )

    def _structure(self, plan: Plan) -> AnswerGrammar | None:
        """The JSON constraints of an answer: its format's, and its calls' arguments' for the
        tools that take a JSON object; None when it has neither."""
        if not plan.scan_calls:
            return None
        arguments = {
            name: tool.parameters
            for name, tool in plan.tools.items()
            if tool.parameters is not None and plan.inline
        }
        if plan.answer_format is None and not arguments:
            return None
        functions = {name: arguments[name] for name in plan.client if name in arguments}
        return AnswerGrammar(self.grammars, arguments, plan.answer_format, functions, plan.prefill)

    def select_tools(self, names: list[str] | None) -> dict[str, Tool]:
        """The tools an answer may use (by default those `offered` now); `BadRequest` naming any
        that are not registered."""
        if names is None:
            return {n: tool for n, tool in self.tools.items() if tool.offered()}
        unknown = sorted(set(names) - set(self.tools))
        if unknown:
            raise BadRequest(f"unknown tools {unknown}; available: {sorted(self.tools)}")
        return {n: self.tools[n] for n in names}

    async def _call(
        self,
        index: int,
        call: Call,
        tools: Mapping[str, Tool],
        answer: _Answer,
        sample: int | None,
    ) -> ResultEvent:
        tool = tools.get(call.name)
        if answer.calls_left <= 0:
            error = f"call limit reached ({answer.max_calls}); answer without tools"
            return ResultEvent(index, call.name, call.argument, None, error, 0.0, sample)
        if tool is None:
            error = f"unknown tool {call.name!r}; tools: {', '.join(sorted(tools)) or 'none'}"
            return ResultEvent(index, call.name, call.argument, None, error, 0.0, sample)
        answer.calls_left -= 1
        outcome = await invoke(tool, call.argument, self.config.call_timeout_s)
        return ResultEvent(
            index,
            call.name,
            call.argument,
            outcome.result,
            outcome.error,
            outcome.duration_s,
            sample,
        )


def _logprob(logits: Logits, token: int) -> float:
    """log p(token) under the model's own distribution (before any mask or temperature)."""
    top = float(np.max(logits))
    return float(logits[token]) - top - float(np.log(np.sum(np.exp(logits - top))))


def _malformed(
    text: str, fence: str | None, inline: bool, first: int, sample: int | None
) -> list[ResultEvent]:
    """A trace record for each malformed call in `text`, numbered from `first`."""
    scanner = CallScanner(fence, inline=inline)
    scanner.feed(text)
    bad = [s for s in scanner.finish() if isinstance(s, Malformed)]
    return [
        ResultEvent(
            first + i,
            b.text[1:].split("(")[0],
            b.text,
            None,
            f"malformed call: {b.reason}",
            0.0,
            sample,
        )
        for i, b in enumerate(bad)
    ]


async def final_event(events: AsyncIterator[Event]) -> FinalEvent:
    """The `FinalEvent` of an answer's events, consuming the rest."""
    async for event in events:
        if isinstance(event, FinalEvent):
            return event
    raise RuntimeError("the engine ended without a final event")  # pragma: no cover


@dataclass(frozen=True)
class _Reading:
    """The prompt as read: its length, when the answer started, how long the reading took."""

    prompt_tokens: int
    started: float
    prefill_s: float


class _Answer:
    """The growing text of one answer and what has been streamed of it."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.calls_left = max_calls
        self.text = ""
        self.trace: list[ResultEvent] = []
        self.generated = 0
        self.spliced = 0
        self.logprob = 0.0  # of the tokens chosen, summed (when the answer is one of samples)
        self.client_call: ClientCall | None = None
        self._model_from = 0  # stop strings are searched only in what the model wrote
        self._emitted = 0

    def start_with(self, text: str) -> None:
        """Text the answer holds before the model writes (not streamed, no stop searched)."""
        self.text = text
        self._emitted = self._model_from = len(text)

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
