"""WebGPT mode (Nakano et al., 2021): browse, collect verbatim quotes, answer citing them.

    question → policy chooses commands → TextBrowser runs them → quotes
             → the model answers from the question and the quotes only → markers checked

Two policies choose the commands (`WebGPTConfig.policy`):

- `builtin`: search the question, open the top results, quote the passage of each that best
  matches the question, answer. A small model cannot drive a browser reliably; this still gives
  it the mode's point, an answer whose claims can be checked.
- `model`: the model reads the browser's compact state and writes one command per step.

Each command is a `CallEvent`/`ResultEvent` pair. A hard budget bounds every question: actions
(invalid commands count), pages opened, and wall-clock time; when it runs out the agent answers
from the quotes it has and says so. With no quote at all it says it found no source instead of
answering unsupported. Markers in the answer are checked as it streams (`citations`); if the
model cites nothing, the quote sharing most words with the answer is cited.

Left out: WebGPT's reward model and best-of-n sampling, and memory between questions.

Long (over 300 lines) because the two policies, the action budget and the cited answer share one
run's state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from agent_server.backends.base import Backend
from agent_server.core.decoding import Sampling
from agent_server.core.engine import Engine
from agent_server.core.events import (
    AnswerEvent,
    CallEvent,
    Event,
    FinalEvent,
    ResultEvent,
    Timings,
    TokenEvent,
    Usage,
)
from agent_server.core.prompts import CHAT_STOPS, PromptStyle, Rendered, exchange, load_template
from agent_server.errors import BrowserError, PageError
from agent_server.webgpt.browser import (
    COMMANDS,
    BrowserLimits,
    Command,
    OpenPage,
    Search,
    TextBrowser,
    parse_command,
)
from agent_server.webgpt.citations import MarkerFilter, Quote, answer_context
from agent_server.webgpt.readable import strip_link_markup
from tools.base import ToolError
from tools.search_local import snippet

Policy = Literal["builtin", "model"]
# A browsing command is one line; an answer is a few sentences, each line a paragraph.
COMMAND_STOPS: tuple[tuple[str, ...], tuple[str, ...]] = (("\n",), ("\n",))
ANSWER_STOPS = (CHAT_STOPS, CHAT_STOPS)  # a paragraph, in both prompt styles
NO_SOURCES = "I could not find a source that answers this, so I won't guess."


@dataclass(frozen=True)
class WebGPTConfig:
    policy: Policy = "builtin"
    # The built-in policy takes 1 + 3 per page + 1 actions; 16 leave the model-driven one room.
    max_actions: int = 16
    time_limit_s: float = 60.0  # browsing only; the answer is bounded by its tokens
    limits: BrowserLimits = field(default_factory=BrowserLimits)
    quote_chars: int = 320  # the built-in policy's quotes: a sentence or two
    command_tokens: int = 96  # a quote command repeats a sentence or two of the page
    answer_tokens: int = 160


@dataclass(frozen=True)
class BrowsingLimit:
    """A budget that ran out: which (`FinalEvent.stop_reason`), and how it is said."""

    reason: Literal["time", "action"]
    said: str  # "time limit (60 s)"


@dataclass
class _Run:
    """What one question's browsing produced."""

    trace: list[ResultEvent] = field(default_factory=list)
    stopped: BrowsingLimit | None = None  # the limit that ended browsing early, if one did
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_s: float = 0.0


class WebGPT:
    def __init__(
        self,
        engine: Engine,
        search: Search,
        open_page: OpenPage,
        config: WebGPTConfig | None = None,
        style: PromptStyle = "chat",
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._on_close = on_close
        self.engine = engine
        self.search = search
        self.open_page = open_page
        self.config = config or WebGPTConfig()
        self.style = style
        self._browse_prompt = load_template("webgpt_browse.j2")
        self._answer_prompt = load_template("webgpt_answer.j2")

    async def aclose(self) -> None:
        """Release what browsing holds open (the page fetcher's connections)."""
        if self._on_close is not None:
            await self._on_close()

    @property
    def backend(self) -> Backend:
        return self.engine.backend

    async def stream(
        self, question: str, *, sampling: Sampling | None = None, policy: Policy | None = None
    ) -> AsyncGenerator[Event, None]:
        """Browse for `question`, then answer; the last event is a `FinalEvent` with quotes."""
        sampling = sampling or Sampling()
        started = time.perf_counter()
        browser = TextBrowser(question, self.search, self.open_page, self.config.limits)
        run = _Run()
        async for event in self._browse(browser, run, policy or self.config.policy):
            yield event
        browsed_s = time.perf_counter() - started
        pieces: list[str] = []
        async for event in self._answer(question, browser.quotes, run, sampling):
            if isinstance(event, TokenEvent):
                # The text is the reader's answer too: no calls in it (its start trimmed).
                said = event.text if pieces else event.text.lstrip()
                pieces.append(said)
                yield event
                if said:
                    yield AnswerEvent(said)
            else:
                yield event
        note = ""
        if run.stopped is not None:
            note = (
                f"(Browsing stopped at its {run.stopped.said}; this answer rests on the "
                f"{len(browser.quotes)} quotes collected before that.)"
            )
            pieces.append("\n\n" + note)
            yield TokenEvent("\n\n" + note)
            yield AnswerEvent("\n\n" + note)
        total_s = time.perf_counter() - started
        answer = "".join(pieces).strip()
        yield FinalEvent(
            answer=answer,
            text=answer,
            trace=tuple(run.trace),
            usage=Usage(run.prompt_tokens, run.completion_tokens, 0),
            timings=Timings(0.0, run.model_s, browsed_s, total_s),
            stop_reason="eos" if run.stopped is None else run.stopped.reason,
            note=note,
            quotes=tuple(browser.quotes),
            strategy="webgpt",
        )

    async def _browse(
        self, browser: TextBrowser, run: _Run, policy: Policy
    ) -> AsyncGenerator[Event, None]:
        deadline = time.monotonic() + self.config.time_limit_s
        commands = self._builtin(browser) if policy == "builtin" else self._driven(browser, run)
        try:
            while not browser.ended:
                left = self.config.max_actions - len(run.trace)
                if left <= 0:
                    said = f"action limit ({self.config.max_actions} actions)"
                    run.stopped = BrowsingLimit("action", said)
                    return
                try:
                    async with asyncio.timeout_at(_loop_time(deadline)):
                        command = await anext(commands)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    run.stopped = self._time_limit()
                    return
                index = len(run.trace)
                yield CallEvent(index, command.name, command.argument)
                record, timed_out = await self._run(browser, command, index, deadline)
                run.trace.append(record)
                yield record
                if timed_out:
                    run.stopped = self._time_limit()
                    return
        finally:
            await commands.aclose()

    def _time_limit(self) -> BrowsingLimit:
        return BrowsingLimit("time", f"time limit ({self.config.time_limit_s:g} s)")

    async def _run(
        self, browser: TextBrowser, command: Command, index: int, deadline: float
    ) -> tuple[ResultEvent, bool]:
        """The command's result, and whether browsing's time ran out while it ran."""
        started = time.perf_counter()
        result: str | None = None
        error: str | None = None
        timed_out = False
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                result = await browser.run(command)
        except TimeoutError:
            error, timed_out = "time limit reached", True
        except (BrowserError, PageError, ToolError) as exc:  # the page's or the query's fault
            error = str(exc) or type(exc).__name__
        duration = time.perf_counter() - started
        record = ResultEvent(index, command.name, command.argument, result, error, duration)
        return record, timed_out

    async def _builtin(self, browser: TextBrowser) -> AsyncGenerator[Command, None]:
        """Search the question, quote the best passage of each top result, answer."""
        yield Command("Search", browser.question)
        results = browser.page
        if results is None or not browser.on_results:
            return
        for link in results.links[: self.config.limits.max_pages]:
            yield Command("Click", str(link.number))
            page = browser.page
            if page is None or browser.on_results:
                continue  # it did not open; the error is in the trace
            passage = best_passage(
                strip_link_markup(page.text), browser.question, self.config.quote_chars
            )
            if passage and len(passage) <= self.config.limits.max_quote_chars:
                yield Command("Quote", passage)
            if len(browser.quotes) >= self.config.limits.max_quotes:
                break
            yield Command("Back")
        yield Command("End")

    async def _driven(self, browser: TextBrowser, run: _Run) -> AsyncGenerator[Command, None]:
        """The model writes each command from the browser's state."""
        system = self._browse_prompt.render(commands=COMMANDS).strip()
        sampling = Sampling(max_new_tokens=self.config.command_tokens)
        while True:
            state = browser.render(self.config.max_actions - len(run.trace))
            rendered = exchange(self.backend, self.style, system, state, "Command:", COMMAND_STOPS)
            written = await self._complete(rendered, sampling, run)
            yield parse_command(written)

    async def _answer(
        self, question: str, quotes: list[Quote], run: _Run, sampling: Sampling
    ) -> AsyncGenerator[TokenEvent, None]:
        if not quotes:
            yield TokenEvent(NO_SOURCES)
            return
        system = self._answer_prompt.render().strip()
        user = f"Quotes:\n{answer_context(quotes)}\n\nQuestion: {' '.join(question.split())}"
        rendered = exchange(self.backend, self.style, system, user, "Answer:", ANSWER_STOPS)
        tokens = min(
            sampling.max_new_tokens or self.config.answer_tokens, self.config.answer_tokens
        )
        markers = MarkerFilter([q.number for q in quotes])
        shown: list[str] = []
        async for text in self._tokens(
            rendered, dataclasses.replace(sampling, max_new_tokens=tokens), run
        ):
            if piece := markers.feed(text):
                shown.append(piece)
                yield TokenEvent(piece)
        if rest := markers.finish():
            shown.append(rest)
            yield TokenEvent(rest)
        support = None if markers.cited else best_support("".join(shown), quotes)
        if support is not None:
            yield TokenEvent(f" [{support.number}]")

    async def _complete(self, rendered: Rendered, sampling: Sampling, run: _Run) -> str:
        return "".join([t async for t in self._tokens(rendered, sampling, run)])

    async def _tokens(
        self, rendered: Rendered, sampling: Sampling, run: _Run
    ) -> AsyncIterator[str]:
        events = self.engine.complete(rendered, sampling)
        try:
            async for event in events:
                if isinstance(event, TokenEvent):
                    yield event.text
                elif isinstance(event, FinalEvent):
                    run.prompt_tokens += event.usage.prompt_tokens
                    run.completion_tokens += event.usage.completion_tokens
                    run.model_s += event.timings.total_s
        finally:
            await events.aclose()


def best_passage(text: str, question: str, max_chars: int = 320) -> str:
    """The sentences of `text` that best match `question`, as a quotable span."""
    if not text.strip():
        return ""
    return snippet(text, question, max_chars).strip("…").strip()


def best_support(answer: str, quotes: list[Quote]) -> Quote | None:
    """The quote sharing the most words with `answer` (the first on a tie), if any shares one."""
    words = set(answer.casefold().split())
    shared = [(len(words & set(q.text.casefold().split())), -q.number, q) for q in quotes]
    best = max(shared, key=lambda s: s[:2])
    return best[2] if best[0] > 0 else None


def _loop_time(monotonic_deadline: float) -> float:
    """A `time.monotonic()` deadline on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())
