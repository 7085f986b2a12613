"""What the engine reports while it answers, in the order it happens.

    TokenEvent   text the model wrote (calls included, as written)
    CallEvent    a call closed and its tool is about to run
    ResultEvent  the tool's result or error, and how long it took
    FinalEvent   the answer without call syntax, the full trace, usage and timings
                 (and in WebGPT mode the quotes it cites)

In WebGPT mode each browser command is a CallEvent/ResultEvent pair (tool = the command's name,
result = what the browser observed), so every consumer shows browsing as it shows tool calls.

Consumers (the CLI, the HTTP API) render these; the engine does not know who listens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_server.citations import Quote


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class CallEvent:
    index: int
    tool: str
    argument: str


@dataclass(frozen=True)
class ResultEvent:
    """One call in the trace. Exactly one of `result` and `error` is set."""

    index: int
    tool: str
    argument: str
    result: str | None
    error: str | None
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0  # written by the model
    spliced_tokens: int = 0  # tool results fed back in


@dataclass(frozen=True)
class Timings:
    prefill_s: float = 0.0
    decode_s: float = 0.0
    tools_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class FinalEvent:
    answer: str  # for the reader: call syntax removed
    text: str  # as generated, with spliced results
    trace: tuple[ResultEvent, ...] = ()
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)
    stop_reason: str = "eos"  # eos | stop | length
    # WebGPT mode: the quotes the answer's `[n]` markers cite (number n is quotes[n - 1]).
    quotes: tuple[Quote, ...] = ()


Event = TokenEvent | CallEvent | ResultEvent | FinalEvent
