"""`agent-server toolformer generate`: texts annotated with the calls that helped the model.

For each text x and each tool, after Schick et al. (2023, section 2), with the model reading x
after the service's own few-shot prompt for that tool (`prompts/toolformer.j2` and
`examples/<Tool>.txt`, plain style), H:

1. Positions: p_i = p(`[` | H, x_1 … x_{i−1}) at every token i; the `top_k` largest above `tau_s`.
2. Candidates: at each, `m` calls sampled after `H, x_1 … x_{i−1} [Tool(`.
3. Execution: each distinct, well-formed call runs through the tool as the engine would run it
   (`tools.base.invoke`); a call whose tool says it failed, or that restates its input, is dropped,
   and so is a Calculator call whose result the text does not go on to state.
4. Filter (`filtering.py`): the call, spliced in where it was made, must lower the weighted loss
   of the five tokens after it by `tau_f` against both no call and the call without its result.
   Of a position's candidates the best is kept; of neighbouring positions, one.
5. Output: one JSONL record per text with a kept call: the text with its calls spliced in,
   `[Calculator(400/1400) → 0.2857]`, as the engine writes them, and the calls.

Where this departs from the paper, and why (measured on the default 0.5B model, worked word
problems; `README.md`, "Toolformer training"):
- The paper reads x after an annotation prompt for positions and candidates, and scores the
  filter with the call as a prefix before x. Read that way, this model put its largest p(`[`) at
  the text's start and after "Answer:" (at most 0.01 where a result followed "="), and a prefix's
  result 100 tokens back lowered its loss by under 0.2, right or wrong. After its own prompt it
  gives `[` 0.14–0.9 before results, and a call spliced in place separates right results (195*12
  → 2340: gain 0.65) from wrong ones (gains of −2 and less). The paper's reason for the prefix,
  a model that has never seen calls in text, does not hold for a model prompted with them.
- Every text is tried (the paper first keeps texts likely to need the tool).
- A Calculator call must also be followed by its result: the text's next number, within the
  window the filter scores, states it (`stated`, `NUMERIC_TOOLS`). The loss filter alone kept
  calls whose result the text went on to contradict or ignore.

Long (over 300 lines) because the paper's three steps (positions, sampled calls, the loss filter)
share one model session and its cached prompt.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_server.core import numbers
from agent_server.core.grammar import Call, parse, render
from agent_server.core.prompts import Prompt
from agent_server.evals.runner import Progress
from agent_server.toolformer.filtering import Losses, weighted_loss, weights
from tools.base import Tool, invoke

if TYPE_CHECKING:
    from agent_server.toolformer.lm import LM, Reading

# The text after the call that the filter scores: as many tokens as the loss weighs.
WINDOW = len(weights())
# Tools whose result is a number that the text should go on to state, in the window after the
# call. The filter alone kept calls whose result the text then ignored ("[Calculator(6.67/12)
# → 0.5556] 8 episodes", gain 0.42); fine-tuned on them, the model wrote numbers its own calls
# had not given (results used: 96% before, 87% after).
NUMERIC_TOOLS = frozenset({"Calculator"})


@dataclass(frozen=True)
class GenerateConfig:
    top_k: int = 5  # k: positions tried per text and tool
    tau_s: float = 0.05  # τ_s: the least p(`[`) for a position to be tried
    tau_f: float = 1.0  # τ_f: the least loss reduction for a call to be kept (the paper's 1.0)
    m: int = 3  # candidate calls sampled per position
    max_call_tokens: int = 24  # a call's argument (and closing) longer than this is dropped
    temperature: float = 1.0
    call_timeout_s: float = 10.0
    seed: int = 0


@dataclass(frozen=True)
class KeptCall:
    tool: str
    args: str
    result: str
    token: int  # the position i, in the text's tokens
    offset: int  # where the call goes in the text, in characters
    gain: float  # L⁻ − L⁺
    losses: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Annotated:
    id: str
    text: str  # as given
    augmented: str  # with the kept calls spliced in
    calls: tuple[KeptCall, ...]

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "calls": [asdict(c) for c in self.calls]}


async def annotate(
    lm: LM, doc_id: str, text: str, tools: Mapping[str, Tool], config: GenerateConfig
) -> Annotated | None:
    """`text` with the calls the filter kept, or None if none.

    One call per place in the text: of calls at the same place (one position, or neighbouring
    positions with only spaces between them, as " " and "2" before "288") the best is kept.
    """
    x = lm.encode(text)
    found = []
    for tool in tools.values():
        found.extend(await _annotate_with(lm, text, x, tool, config))
    calls = _one_per_place(text, found)
    if not calls:
        return None
    return Annotated(doc_id, text, augment(text, calls), calls)


def _one_per_place(text: str, calls: Sequence[KeptCall]) -> tuple[KeptCall, ...]:
    places: list[list[KeptCall]] = []
    for call in sorted(calls, key=lambda c: c.offset):
        if places and not text[places[-1][-1].offset : call.offset].strip():
            places[-1].append(call)
        else:
            places.append([call])
    return tuple(max(place, key=lambda c: c.gain) for place in places)


def augment(text: str, calls: Sequence[KeptCall]) -> str:
    """`text` with each call spliced in at its offset, spaced as the engine writes calls."""
    out, start = [], 0
    for call in sorted(calls, key=lambda c: c.offset):
        before = text[start : call.offset]
        out.append(before.rstrip(" ") + _gap(before) + render(call.tool, call.args, call.result))
        space, start = _resume(text, call.offset)
        out.append(space)
    out.append(text[start:])
    return "".join(out)


def _gap(before: str) -> str:
    """The space between the text before a call and the call: one, unless the text is empty."""
    return " " if before.strip() else ""


def _resume(text: str, offset: int) -> tuple[str, int]:
    """After a call at `offset`: the space written after it (none before punctuation) and
    where the text goes on."""
    start = offset
    while start < len(text) and text[start] == " ":
        start += 1
    tight = start < len(text) and text[start] in ".,;:!?)"
    return ("" if tight else " "), start


async def _annotate_with(
    lm: LM, text: str, x: list[int], tool: Tool, config: GenerateConfig
) -> list[KeptCall]:
    header = _header(lm, tool)
    probs = await asyncio.to_thread(lambda: lm.opener_probs(lm.read(header, []), x))
    positions = [i for i in probs.argsort()[::-1][: config.top_k] if probs[i] > config.tau_s]
    kept = []
    for i in sorted(int(p) for p in positions):
        place = Place(text, x, i, len(lm.decode(x[:i])))
        best = await _best_call(lm, header, place, tool, config)
        if best is not None:
            kept.append(KeptCall(best[0].name, best[0].args, best[1], i, place.offset, *best[2:]))
    return kept


def _header(lm: LM, tool: Tool) -> list[int]:
    """The service's few-shot prompt for `tool` alone, as the model reads every text after it
    (the same for every text: read once and forked)."""
    return lm.encode(Prompt("plain").instructions([tool]) + "\n\n")


@dataclass(frozen=True)
class Place:
    """Position i of a text: its tokens x, and where x_i starts in characters."""

    text: str
    x: list[int]
    i: int
    offset: int

    def before(self) -> list[int]:
        return self.x[: self.i]

    def gap(self) -> str:
        """What goes between the text so far and a call: a space, as `augment` writes it."""
        before = self.text[: self.offset]
        return _gap(before) if not before.endswith(" ") else ""


async def _best_call(
    lm: LM, header: list[int], place: Place, tool: Tool, config: GenerateConfig
) -> tuple[Call, str, float, dict[str, float]] | None:
    name = tool.name
    base = await asyncio.to_thread(lm.read, header, place.before())  # for every use below
    opened = lm.encode(f"{place.gap()}[{name}(")
    samples = await asyncio.to_thread(
        lambda: lm.sample(
            lm.extend(base, opened),
            config.m,
            config.max_call_tokens,
            temperature=config.temperature,
            seed=config.seed + place.i,
            done=lambda sample: _call_end(sample) >= 0,
        )
    )
    window = place.x[place.i :][:WINDOW]
    no_call = weighted_loss(await asyncio.to_thread(lm.logprobs, base, window))
    best = None
    for call in _distinct_calls(name, samples):
        outcome = await invoke(tool, call.argument, config.call_timeout_s)
        if outcome.result is None or outcome.result.strip() == call.argument.strip():
            continue  # failed, or restates its own input ("[Calculator(90) → 90]")
        if name in NUMERIC_TOOLS and not stated(outcome.result, place, len(lm.decode(window))):
            continue
        losses = Losses(
            with_result=await _loss(lm, base, place, render(name, call.args, outcome.result)),
            no_call=no_call,
            call_only=await _loss(lm, base, place, render(name, call.args)),
        )
        if losses.keep(config.tau_f) and (best is None or losses.gain > best[2]):
            best = (call, outcome.result, losses.gain, asdict(losses))
    return best


def stated(result: str, place: Place, within: int) -> bool:
    """Whether the text after a call at `place` states `result`, a number, as its first
    number, starting in the first `within` characters (0.2857 stated as 0.29 counts)."""
    value = numbers.as_number(result)
    first = numbers.first_number(place.text[_resume(place.text, place.offset)[1] :])
    return (
        value is not None
        and first is not None
        and first[0] < within
        and numbers.written_as(value, first[1])
    )


def _call_end(sample: str) -> int:
    """Where the sampled argument ends (its closing parenthesis), or -1 while it goes on."""
    for closing in (")]", ") →"):
        end = sample.find(closing)
        if end >= 0:
            return end
    return -1


def _distinct_calls(name: str, samples: Sequence[str]) -> list[Call]:
    """The well-formed calls among the sampled continuations of `[Name(`, each once."""
    calls: dict[str, Call] = {}
    for sample in samples:
        end = _call_end(sample)
        if end < 0:
            continue
        for segment in parse(f"[{name}({sample[:end]})]"):
            if isinstance(segment, Call) and segment.name == name and segment.args.strip():
                calls.setdefault(segment.args.strip(), segment)
    return list(calls.values())


async def _loss(lm: LM, base: Reading, place: Place, call: str) -> float:
    """The weighted loss of the first tokens after `call`, spliced in at `place` as `augment`
    would write it; `base` has read the prompt and the text up to `place`."""
    space, start = _resume(place.text, place.offset)
    after = lm.encode(space + place.text[start:])[:WINDOW]
    spliced = lm.encode(place.gap() + call)
    return weighted_loss(
        await asyncio.to_thread(lambda: lm.logprobs(lm.extend(base, spliced), after))
    )


@dataclass(frozen=True)
class Summary:
    texts: int
    annotated: int  # texts with at least one kept call
    calls: dict[str, int]  # kept calls by tool
    seconds: float


async def run(
    lm: LM,
    records: Sequence[Mapping[str, Any]],
    tools: Mapping[str, Tool],
    config: GenerateConfig,
    out: Path,
    progress: Progress | None = None,
    workers: int = 1,
) -> Summary:
    """Annotate every record's `text`, writing each annotated one to `out` (JSONL) as it comes.

    `workers` texts are read at once: on a backend that batches (llama.cpp), their tokens share
    each forward pass, which costs little more than one token's on a CPU. With one, the records
    come out in the corpus's order."""
    started = time.monotonic()
    calls: dict[str, int] = dict.fromkeys(tools, 0)
    annotated = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    turns = asyncio.Semaphore(workers)

    async def one(number: int, record: Mapping[str, Any]) -> Annotated | None:
        doc_id = str(record.get("id") or record.get("doc_id") or number)
        async with turns:
            return await annotate(lm, doc_id, str(record["text"]), tools, config)

    tasks = [asyncio.ensure_future(one(n, r)) for n, r in enumerate(records)]
    try:
        with out.open("w", encoding="utf-8") as handle:
            for finished in asyncio.as_completed(tasks):
                result = await finished
                if result is not None:
                    annotated += 1
                    for call in result.calls:
                        calls[call.tool] += 1
                    handle.write(json.dumps(result.record(), ensure_ascii=False) + "\n")
                    handle.flush()  # an interrupted run keeps what it finished
                if progress is not None:
                    progress.advance()
    finally:
        for task in tasks:
            task.cancel()  # a no-op when done; after a failure, the rest stop
    return Summary(len(records), annotated, calls, time.monotonic() - started)
