"""Self-consistency (Wang et al., 2023): several answers sampled from one prompt, their values
put to a vote.

The engine forks one session after reading the prompt, so the k samples share its KV cache
(on llama.cpp, the same cells) and decode side by side: their steps go to the backend from k
model threads and llama.cpp decodes them in one batch. `merge` interleaves their events;
`tally` counts their values:

- numbers vote by value (within `numbers`' tolerance: 5, 5.0 and 5.00001 are one vote), an
  answer without a number by its text (lower case, white space normalised);
- the most votes win; a tie goes to the value whose samples the model found likelier (the
  mean, over those samples, of each one's mean token log-probability);
- a sample without a value votes only when no sample has one;
- the answer shown is the winning value's likeliest sample.

An ensemble of strategies (`strategies.CONSENSUS`) votes the same way, except that a tie goes to
the value of the strategy listed first, and its answer is shown: log-probabilities under
different prompts do not compare. It asks its rounds only until a value holds a strict majority
of the answers so far (`decided`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from agent_server.core import numbers
from agent_server.core.events import Event, FinalEvent, Vote


def tally(samples: Sequence[FinalEvent], *, by_order: bool = False) -> tuple[int, tuple[Vote, ...]]:
    """The winning sample's index and every value's vote, the winner's first; `by_order` breaks
    ties by the samples' order, not their likelihood (an ensemble of strategies)."""
    if not samples:
        raise ValueError("no samples to vote on")
    groups: list[list[int]] = []
    for i, sample in enumerate(samples):
        for group in groups:
            if agree(samples[group[0]], sample):
                group.append(i)
                break
        else:
            groups.append([i])
    with_value = [g for g in groups if samples[g[0]].value is not None]
    candidates = with_value or groups

    def likelihood(group: list[int]) -> float:
        return _mean([_logprob(samples[i]) for i in group])

    def strength(group: list[int]) -> tuple[int, float]:
        return len(group), -group[0] if by_order else likelihood(group)

    ranked = sorted(candidates, key=strength, reverse=True)
    ranked += [g for g in groups if g not in ranked]
    votes = tuple(
        Vote(
            value=samples[g[0]].value,
            samples=tuple(g),
            strategies=tuple(samples[i].strategy for i in g),
            mean_logprob=None if by_order else round(likelihood(g), 4),
        )
        for g in ranked
    )
    best = ranked[0]
    winner = best[0] if by_order else max(best, key=lambda i: _logprob(samples[i]))
    return winner, votes


def decided(samples: Sequence[FinalEvent]) -> bool:
    """Whether one value holds more than half of the votes so far: an ensemble asks its next
    round only while its answers split (two members that agree, or two of three, decide)."""
    _, votes = tally(samples, by_order=True)
    return 2 * len(votes[0].samples) > len(samples)


def agree(a: FinalEvent, b: FinalEvent) -> bool:
    """Whether two answers vote alike: the same number, or without numbers the same text."""
    return _same_vote(a, b)


def _logprob(final: FinalEvent) -> float:
    return final.mean_logprob if final.mean_logprob is not None else float("-inf")


def _same_vote(a: FinalEvent, b: FinalEvent) -> bool:
    if a.value is None or b.value is None:
        if a.value is not None or b.value is not None:
            return False
        return _text_key(a.answer) == _text_key(b.answer)
    x, y = numbers.last_number(a.value), numbers.last_number(b.value)
    return numbers.same_number(x, y)


def _text_key(answer: str) -> str:
    return " ".join(answer.lower().split()).rstrip(".")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("-inf")


async def merge(
    streams: Sequence[AsyncGenerator[Event, None]],
) -> AsyncIterator[tuple[int, Event]]:
    """Every stream's events as they come, each with its stream's index. An error in one ends
    them all; so does closing this iterator (the client has gone): every stream is closed."""
    queue: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncGenerator[Event, None]) -> None:
        try:
            async for event in stream:
                await queue.put((index, event))
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put((index, exc))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            await stream.aclose()
