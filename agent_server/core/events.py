"""What the engine reports while it answers, in the order it happens.

    TokenEvent   text the model wrote (calls included, as written)
    AnswerEvent  the reader's answer as it grows (no call syntax): the deltas add up to
                 `FinalEvent.answer`
    CallEvent    a call closed and its tool is about to run
    ResultEvent  the tool's result or error, and how long it took
    FinalEvent   the answer without call syntax, its value, the full trace, usage and timings
                 (in WebGPT mode the quotes it cites; with several samples, their votes)

With several samples (self-consistency), the token, call and result events of each carry its
number (`sample`); the final event is the winning sample's, with every sample's vote.

In WebGPT mode each browser command is a CallEvent/ResultEvent pair (tool = the command's name,
result = what the browser observed), so every consumer shows browsing as it shows tool calls.

Consumers (the CLI, the HTTP API) render these; the engine does not know who listens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent_server.webgpt.citations import Quote


@dataclass(frozen=True)
class TokenEvent:
    text: str
    sample: int | None = None  # which of several samples wrote it; None: the only one


@dataclass(frozen=True)
class AnswerEvent:
    """More of the reader's answer: calls removed, a result kept where it stands for a value.
    With several samples it comes once, the winner's whole answer, after the vote."""

    text: str


@dataclass(frozen=True)
class CallEvent:
    index: int
    tool: str
    argument: str
    sample: int | None = None


@dataclass(frozen=True)
class ResultEvent:
    """One call in the trace. Exactly one of `result` and `error` is set."""

    index: int
    tool: str
    argument: str
    result: str | None
    error: str | None
    duration_s: float
    sample: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# Why an answer ended: the model's end of text, a stop string, the token budget; a call to one of
# the client's functions (it runs the call and sends the result back); in WebGPT mode, browsing's
# time or action limit (the answer then rests on the quotes collected before it).
StopReason = Literal["eos", "stop", "length", "tool_calls", "time", "action"]
CheckKind = Literal["stated_answer_differs", "value_from_error"]


@dataclass(frozen=True)
class Check:
    """Something the answer's self-check caught (`strategies.read_value`):
    "stated_answer_differs": the answer states `stated` but its program printed `computed`;
    "value_from_error": the number `stated` is only in a tool's error message (no value then)."""

    kind: CheckKind
    stated: str | None = None
    computed: str | None = None


@dataclass(frozen=True)
class ClientCall:
    """A call to one of the client's functions, which the client runs (OpenAI's `tool_calls`)."""

    name: str
    arguments: str  # as the model wrote them: a JSON object, checked against the function's schema


@dataclass(frozen=True)
class Vote:
    """One value the samples gave, by how many and how likely (`consistency`)."""

    value: str | None  # as the first sample that gave it wrote it; None: no value
    samples: tuple[int, ...]
    strategies: tuple[str, ...]  # each of those samples' strategy
    # The mean, over those samples, of their tokens' mean log-probability; None for an ensemble
    # of strategies, whose prompts differ.
    mean_logprob: float | None


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
    stop_reason: StopReason = "eos"
    # What the service added after the model's words, as the answer's last paragraph (WebGPT: that
    # browsing stopped early); "" when nothing was. Scoring leaves it out.
    note: str = ""
    client_call: ClientCall | None = None  # stop_reason "tool_calls": the call the client runs
    # WebGPT mode: the quotes the answer's `[n]` markers cite (number n is quotes[n - 1]).
    quotes: tuple[Quote, ...] = ()
    strategy: str = "toolformer"  # how it reasoned (`strategies`); "webgpt" in WebGPT mode
    value: str | None = None  # the answer's number as written, when it has one
    checks: tuple[Check, ...] = ()
    votes: tuple[Vote, ...] = ()  # with several samples: each value's vote, the winner first
    sample: int | None = None  # with several samples: the one whose answer this is
    # With several samples: the mean log-probability of this sample's tokens (ties go to the
    # likelier value).
    mean_logprob: float | None = None


Event = TokenEvent | AnswerEvent | CallEvent | ResultEvent | FinalEvent
