"""How the model is asked to reason: a prompt, the tools it may call, a token budget, and how the
answer's value is read from what it wrote.

    toolformer  one or two sentences, a tool called inline where it helps (Schick et al., 2023):
                right for short factual questions and one-step arithmetic
    calculator  reasoning in sentences, one step a line, each calculation an inline Calculator
                call whose spliced result the next step uses: GSM8K's own solution format
                (`48/2 = <<48/2=24>>24` becomes `48/2 = [Calculator(48/2) → 24] 24`)
    program     program-aided (Gao et al., 2022): a short program in a fenced Python call, run in
                the sandbox; the answer states what it printed (`calls`: the fenced form)
    tir         tool-integrated reasoning (Gou et al., 2024; Qwen2.5-Math's format): reasoning in
                sentences, with a program where something is to be computed, and the final
                answer in `\boxed{}`
    cot         the model alone, as a user of llama.cpp or Ollama asks it: its chat template with
                its own system prompt, "Please reason step by step, and put your final answer
                within \\boxed{}", no tools. The baseline the others are measured against.
    consensus   three of them vote (Liu et al., 2023's mixture of reasoning methods, stopped
                early as in Aggarwal et al., 2023): tir and program answer side by side; when
                their values agree that is the answer, else cot answers too and the most votes
                win (a three-way split: tir's value)
    auto        consensus for a question that holds a number, else toolformer (`route`)

Self-consistency (several samples and a vote) applies to any of them: `consistency`.

The value of an answer is a number (as written) when it has one: the last number of the text,
each call standing for its result (`with_results`); for `cot` the `\\boxed{}` one; for `program`
the last number the program printed, which the closing sentence must state (a sentence that
states another number is caught: `Check`).

Long (over 300 lines) because each strategy's settings and the reading of its answer's value sit
side by side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from agent_server.core import numbers
from agent_server.core.events import Check, ResultEvent
from agent_server.core.grammar import Call, parse
from agent_server.errors import BadRequest

StrategyName = Literal["toolformer", "calculator", "program", "tir", "cot", "consensus"]
StrategyChoice = Literal["auto", "toolformer", "calculator", "program", "tir", "cot", "consensus"]
Framing = Literal["few_shot", "chat"]
PROGRAM_TOOL = "Python"


@dataclass(frozen=True)
class Strategy:
    name: StrategyName
    summary: str
    # The system prompt's template in prompts/ (None: the chat template's own system prompt) and
    # how the question is put: after "Question:" with an "Answer:" cue, or as the user's message.
    system: str | None
    framing: Framing
    # A file of worked examples in prompts/; None: each tool's own (`examples/<Tool>.txt`).
    examples: str | None
    # The tools it calls; None: the request's (toolformer's choice among all of them).
    tools: tuple[str, ...] | None
    max_new_tokens: int
    max_calls: int | None  # None: the service's setting
    call_top_k: int | None  # Toolformer's rule that forces a call; None: the service's setting
    fence: str | None = None  # the tool a fenced code block calls (`calls.CallScanner`)
    inline: bool = True  # whether `[Name(…)]` is a call (else `[` is text: LaTeX's `\[` …)
    question_template: str | None = None  # the user's message, when the question is wrapped
    # An ensemble answers in rounds, each asked only while the answers so far hold no majority
    # (`consistency.decided`): its members side by side, then its tiebreakers. The most votes
    # win, a tie the earliest answer's value (`consistency.tally`).
    members: tuple[StrategyName, ...] = ()
    tiebreakers: tuple[StrategyName, ...] = ()

    @property
    def rounds(self) -> tuple[tuple[StrategyName, ...], ...]:
        """An ensemble's rounds, in the order they are asked (empty for a single strategy)."""
        return tuple(r for r in (self.members, self.tiebreakers) if r)

    @property
    def voters(self) -> tuple[StrategyName, ...]:
        """Every answer an ensemble may ask for, in order: a vote's sample index names one."""
        return (*self.members, *self.tiebreakers)


TOOLFORMER = Strategy(
    name="toolformer",
    summary="one or two sentences, a tool called inline where it helps",
    system="toolformer.j2",
    framing="few_shot",
    examples=None,
    tools=None,
    max_new_tokens=256,
    max_calls=None,
    call_top_k=None,
)
CALCULATOR = Strategy(
    name="calculator",
    summary="step-by-step reasoning, each calculation an inline Calculator call",
    system="strategies/calculator.j2",
    framing="few_shot",
    examples="strategies/calculator.txt",
    tools=("Calculator",),
    # GSM8K's solutions take up to eight steps of about 40 tokens each.
    max_new_tokens=512,
    max_calls=12,
    call_top_k=0,  # the model calls where it chooses: forcing `[` broke sentences in half
)
PROGRAM = Strategy(
    name="program",
    summary="a short Python program, run in the sandbox; the answer states its output",
    system="strategies/program.j2",
    framing="chat",
    examples=None,
    tools=(PROGRAM_TOOL,),
    max_new_tokens=640,
    max_calls=3,  # the program, and two repairs after an error
    call_top_k=0,
    fence=PROGRAM_TOOL,
    # Its calls are programs: `[` is text, or a model writing `\[` for LaTeX's display math
    # would be made to write `[Python(` by the name constraint (seen on the tune set).
    inline=False,
)
TIR = Strategy(
    name="tir",
    summary="reasoning in sentences, with Python programs where something is to be computed",
    # Qwen2.5-Math's own instruction for it, in the user's message, under the chat template's
    # system prompt: on the tune set it beat a system prompt of ours (README).
    system=None,
    framing="chat",
    examples=None,
    tools=(PROGRAM_TOOL,),
    max_new_tokens=768,
    max_calls=3,
    call_top_k=0,
    fence=PROGRAM_TOOL,
    inline=False,
    question_template="strategies/tir.j2",
)
COT = Strategy(
    name="cot",
    summary="the model alone, reasoning step by step (the baseline)",
    system=None,
    framing="chat",
    examples=None,
    tools=(),
    # The 1.5B model's step-by-step answers to GSM8K problems take 200-450 tokens.
    max_new_tokens=1024,
    max_calls=0,
    call_top_k=0,
    inline=False,  # the model alone: nothing it writes is a call
    question_template="strategies/cot.j2",
)
CONSENSUS = Strategy(
    name="consensus",
    summary="tir and program answer side by side; if they disagree, cot too; the majority wins",
    system=None,
    framing="chat",
    examples=None,
    tools=(PROGRAM_TOOL,),  # its members' tools
    max_new_tokens=COT.max_new_tokens,  # the longest member's
    max_calls=None,
    call_top_k=0,
    inline=False,
    members=("tir", "program"),
    # Tried and dropped: when the three split three ways, four sampled tir/program answers
    # more (README, "Reasoning with tools"): they scattered as widely, at 90-185 s a question.
    tiebreakers=("cot",),
)
STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (TOOLFORMER, CALCULATOR, PROGRAM, TIR, COT, CONSENSUS)
}
AUTO = "auto"
CHOICES: tuple[str, ...] = get_args(StrategyChoice)
# The service's default (`Settings.strategy`, `Settings.samples`): see the README's evals for
# why. Several samples apply to the default only; a request that names a strategy gets one.
DEFAULT_STRATEGY = AUTO
DEFAULT_SAMPLES = 1
MAX_SAMPLES = 16

# A question "holds a number" when it has a digit or a number word: then arithmetic is likely.
_NUMBER_WORDS = re.compile(
    r"\b(zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
    r"forty|fifty|hundred|thousand|million|billion|half|twice|thrice|double|triple|dozen|"
    r"percent|quarter)\b",
    re.IGNORECASE,
)


def route(question: str, available: Sequence[str]) -> Strategy:
    """`auto`'s choice: consensus for a question that holds a number (when Python is enabled),
    else toolformer, whose few-shot prompt answers a factual question in a sentence."""
    if PROGRAM_TOOL in available and holds_number(question):
        return CONSENSUS
    return TOOLFORMER


def holds_number(question: str) -> bool:
    return any(c.isdigit() for c in question) or _NUMBER_WORDS.search(question) is not None


def resolve(name: str, question: str, available: Sequence[str]) -> Strategy:
    """The strategy `name` ("auto" routed for `question`); `BadRequest` when it is unknown or
    needs a tool the service does not enable."""
    strategy = route(question, available) if name == AUTO else STRATEGIES.get(name)
    if strategy is None:
        raise BadRequest(f"unknown strategy {name!r}; choose one of {', '.join(CHOICES)}")
    missing = [t for t in strategy.tools or () if t not in available]
    if missing:
        raise BadRequest(
            f"strategy {strategy.name!r} needs the {', '.join(missing)} tool, which this "
            "service does not enable (AGENT_TOOLS)"
        )
    return strategy


# -- reading the answer's value -------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """The answer's value (a number as written, or None) and what the self-check found."""

    value: str | None
    checks: tuple[Check, ...] = ()


def read_value(
    strategy: Strategy, text: str, trace: Sequence[ResultEvent], question: str = ""
) -> Reading:
    """The value of an answer to `question` written under `strategy` (`text` as generated,
    results spliced); never a number that only a tool's error message holds."""
    if strategy.name == "cot":
        reading = Reading(stated(text))
    elif strategy.fence is not None:
        reading = _program_value(text, trace)
    else:
        reading = Reading(numbers.last_number_text(with_results(text, trace, strategy.fence)))
    return _not_from_an_error(reading, trace, question)


def _not_from_an_error(reading: Reading, trace: Sequence[ResultEvent], question: str) -> Reading:
    """A value that an error message states, and neither the question nor a result does, was
    taken from the error ("404." after a failed search): it is dropped, and the check says so."""
    value = numbers.last_number(reading.value)
    if value is None:
        return reading
    errors = [r.error for r in trace if r.error]
    sources = [question, *(r.result for r in trace if r.result is not None)]
    if any(numbers.written_as(value, e) for e in errors) and not any(
        numbers.written_as(value, s) for s in sources
    ):
        return Reading(None, (*reading.checks, Check("value_from_error", stated=reading.value)))
    return reading


def stated(text: str) -> str | None:
    r"""The number an answer states: the one in its last `\boxed{…}` when it has one (None when
    that holds no number, as `\boxed{\text{Saturday}}`), else its last number."""
    content = boxed_content(text)
    return numbers.last_number_text(text if content is None else content)


def boxed(text: str) -> str | None:
    r"""The number in the last `\boxed{…}` of `text` (braces may nest), or None."""
    return numbers.last_number_text(boxed_content(text) or "")


def boxed_content(text: str) -> str | None:
    r"""What the last closed `\boxed{…}` of `text` holds (braces may nest), or None."""
    at = text.rfind("\\boxed{")
    if at < 0:
        return None
    depth, start = 1, at + len("\\boxed{")
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return None


def with_results(text: str, trace: Sequence[ResultEvent], fence: str | None = None) -> str:
    """`text` with each call replaced by its result (a failed call by nothing, a program and a
    malformed call by nothing): a result can stand in the sentence ("has [Calculator(9+4) → 13]
    kids")."""
    records = iter(trace)  # the spliced calls in order (malformed ones are listed after them)
    parts = []
    for segment in parse(text, fence):
        if isinstance(segment, str):
            parts.append(segment)
        elif isinstance(segment, Call):
            record = next(records, None)
            if not segment.fenced and record is not None:
                parts.append(record.result or "")
    return "".join(parts)


def _program_value(text: str, trace: Sequence[ResultEvent]) -> Reading:
    """PAL's answer is what the last program that ran printed; the text after it must state the
    same number somewhere (`\boxed{}` first), or the check reports it (the program's stands)."""
    ran = [r for r in trace if r.tool == PROGRAM_TOOL and r.ok and r.result is not None]
    printed = numbers.last_number_text(ran[-1].result or "") if ran else None
    segments = parse(text, PROGRAM_TOOL, inline=False)
    last_call = max((i for i, s in enumerate(segments) if isinstance(s, Call)), default=-1)
    closing = "".join(s for s in segments[last_call + 1 :] if isinstance(s, str))
    said = stated(closing)
    if printed is None:
        return Reading(said)
    if said is None or _states(closing, printed):
        return Reading(printed)
    return Reading(printed, (Check("stated_answer_differs", said, printed),))


def _states(text: str, printed: str) -> bool:
    """Whether `text` states the number `printed` anywhere, exactly or rounded as it is written
    there (0.2857142 stated as 0.29)."""
    value = numbers.last_number(printed)
    return value is not None and numbers.written_as(value, text)
