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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from agent_server import numbers
from agent_server.events import Event, FinalEvent, Vote


@dataclass(frozen=True)
class Sampled:
    """One sample's final event and its tokens' mean log-probability."""

    final: FinalEvent
    mean_logprob: float


def tally(samples: Sequence[Sampled]) -> tuple[int, tuple[Vote, ...]]:
    """The winning sample's index and every value's vote, the winner's first."""
    if not samples:
        raise ValueError("no samples to vote on")
    groups: list[list[int]] = []
    for i, sample in enumerate(samples):
        for group in groups:
            if _same_vote(samples[group[0]], sample):
                group.append(i)
                break
        else:
            groups.append([i])
    with_value = [g for g in groups if samples[g[0]].final.value is not None]
    candidates = with_value or groups

    def strength(group: list[int]) -> tuple[int, float]:
        return len(group), _mean([samples[i].mean_logprob for i in group])

    ranked = sorted(candidates, key=strength, reverse=True)
    ranked += [g for g in groups if g not in ranked]
    votes = tuple(
        Vote(
            value=samples[g[0]].final.value,
            samples=tuple(g),
            mean_logprob=round(strength(g)[1], 4),
        )
        for g in ranked
    )
    winner = max(ranked[0], key=lambda i: samples[i].mean_logprob)
    return winner, votes


def _same_vote(a: Sampled, b: Sampled) -> bool:
    if a.final.value is None or b.final.value is None:
        if a.final.value is not None or b.final.value is not None:
            return False
        return _text_key(a.final.answer) == _text_key(b.final.answer)
    x, y = numbers.last_number(a.final.value), numbers.last_number(b.final.value)
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
