"""`agent-server toolformer generate`: texts annotated with the calls that helped the model.

For each text x and each tool (Schick et al., 2023, section 2):

1. Positions: with the tool's annotation prompt P(x) (`prompts/annotate/<Tool>.txt`) before the
   text, p_i = p(`[` | P(x), x_1 … x_{i−1}) at every token i; the `top_k` largest above `tau_s`.
2. Candidates: at each, `m` calls sampled after `P(x), x_1 … x_{i−1} [Tool(` (one batch).
3. Execution: each distinct, well-formed call runs through the tool as the engine would run it
   (`tools.base.invoke`); a call whose tool says it failed is dropped.
4. Filter (`filtering.py`): the call, given as a prefix before the text (the model has not yet
   seen calls inside text), must lower the weighted loss of x_i … x_{i+4} by `tau_f` against
   both no call and the call without its result. Of a position's candidates the best is kept.
5. Output: one JSONL record per text with a kept call: the text with its calls spliced in where
   they were made, `[Calculator(400/1400) → 0.2857]`, as the engine writes them, and the calls.

Left out: the paper's heuristic that only texts likely to need a tool are tried (all are), and
running several texts at once (llama.cpp would batch their steps; one text at a time takes
about 8 s here with top_k 3 and m 3).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_server.calls import Call, parse, render
from agent_server.evals.runner import Progress
from agent_server.prompts import load_template
from agent_server.toolformer.filtering import Losses, weighted_loss, weights
from tools.base import Tool, invoke

if TYPE_CHECKING:
    from agent_server.toolformer.lm import LM

SEPARATOR = "\n"  # between a prefix (a call, or nothing) and the text, in the filter's passes


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
    for name, tool in tools.items():
        found.extend(await _annotate_with(lm, text, x, name, tool, config))
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
        out.append(before.rstrip(" ") + (" " if before.strip() else ""))
        start = call.offset
        while start < len(text) and text[start] == " ":
            start += 1
        # A space after the call, as before a word, but not before punctuation.
        tight = start < len(text) and text[start] in ".,;:!?)"
        out.append(render(call.tool, call.args, call.result) + ("" if tight else " "))
    out.append(text[start:])
    return "".join(out)


async def _annotate_with(
    lm: LM, text: str, x: list[int], name: str, tool: Tool, config: GenerateConfig
) -> list[KeptCall]:
    shared, context = _prompt(lm, name, text)
    probs = lm.opener_probs(shared, lm.encode(context), x)
    positions = [i for i in probs.argsort()[::-1][: config.top_k] if probs[i] > config.tau_s]
    kept = []
    for i in sorted(int(p) for p in positions):
        offset = len(lm.decode(x[:i]))
        opened = f"{context}{text[:offset].rstrip(' ')} [{name}("
        best = await _best_call(lm, shared, lm.encode(opened), x, i, name, tool, config)
        if best is not None:
            kept.append(KeptCall(best[0].name, best[0].args, best[1], i, offset, *best[2:]))
    return kept


def _prompt(lm: LM, name: str, text: str) -> tuple[list[int], str]:
    """The annotation prompt as its fixed start (tokens, read once for every text) and the
    rest, up to and including the space after "Output:", where the text begins again."""
    marker = "\0TEXT\0"
    rendered = load_template(f"annotate/{name}.txt").render(text=marker).rstrip() + " "
    cut = rendered.rfind("\n", 0, rendered.index(marker)) + 1  # at a line start: no merged token
    return lm.encode(rendered[:cut]), rendered[cut:].replace(marker, text)


async def _best_call(
    lm: LM,
    shared: list[int],
    opened: list[int],
    x: list[int],
    i: int,
    name: str,
    tool: Tool,
    config: GenerateConfig,
) -> tuple[Call, str, float, dict[str, float]] | None:
    samples = lm.sample(
        shared,
        opened,
        config.m,
        config.max_call_tokens,
        temperature=config.temperature,
        seed=config.seed + i,
        done=lambda sample: _call_end(sample) >= 0,
    )
    no_call = _loss(lm, "", x, i)
    best = None
    for call in _distinct_calls(name, samples):
        outcome = await invoke(tool, call.argument, config.call_timeout_s)
        if outcome.result is None or outcome.result.strip() == call.argument.strip():
            continue  # failed, or restates its own input ("[Calculator(90) → 90]")
        losses = Losses(
            with_result=_loss(lm, render(name, call.args, outcome.result), x, i),
            no_call=no_call,
            call_only=_loss(lm, render(name, call.args), x, i),
        )
        if losses.keep(config.tau_f) and (best is None or losses.gain > best[2]):
            best = (call, outcome.result, losses.gain, asdict(losses))
    return best


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


def _loss(lm: LM, prefix: str, x: list[int], i: int) -> float:
    """L_i(prefix): the weighted loss of x_i … x_{i+4} with `prefix` before the text."""
    window = x[i : i + len(weights())]
    context = lm.encode(prefix + SEPARATOR) + x[:i]
    return weighted_loss(lm.logprobs(context, window))


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
) -> Summary:
    """Annotate every record's `text`, writing each annotated one to `out` (JSONL) as it comes."""
    started = time.monotonic()
    calls: dict[str, int] = dict.fromkeys(tools, 0)
    annotated = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for number, record in enumerate(records):
            doc_id = str(record.get("id") or record.get("doc_id") or number)
            result = await annotate(lm, doc_id, str(record["text"]), tools, config)
            if result is not None:
                annotated += 1
                for call in result.calls:
                    calls[call.tool] += 1
                handle.write(json.dumps(result.record(), ensure_ascii=False) + "\n")
                handle.flush()  # an interrupted run keeps what it finished
            if progress is not None:
                progress.advance()
    return Summary(len(records), annotated, calls, time.monotonic() - started)
