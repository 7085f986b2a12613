"""Self-consistency's vote and the merging of the samples' event streams."""

from __future__ import annotations

import asyncio

import pytest

from agent_server.core.consistency import merge, tally
from agent_server.core.events import FinalEvent, TokenEvent, Vote


def sample(value: str | None, logprob: float | None, answer: str = "", strategy: str = "tir"):
    text = answer or str(value)
    return FinalEvent(text, text, value=value, mean_logprob=logprob, strategy=strategy)


def test_the_most_common_value_wins_numbers_within_tolerance_counting_as_one() -> None:
    samples = [sample("5", -0.3), sample("6", -0.1), sample("5.00001", -0.2), sample("5.0", -0.4)]
    winner, votes = tally(samples)
    assert votes == (
        Vote("5", (0, 2, 3), ("tir",) * 3, -0.3),
        Vote("6", (1,), ("tir",), -0.1),
    )
    assert winner == 2  # the likeliest sample of the winning value


def test_a_tie_goes_to_the_value_the_model_found_likelier() -> None:
    winner, votes = tally(
        [sample("3", -0.5), sample("0", -0.2), sample("3", -0.6), sample("0", -0.1)]
    )
    assert [v.value for v in votes] == ["0", "3"]
    assert winner == 3


def test_samples_without_a_value_vote_only_when_none_has_one() -> None:
    winner, votes = tally([sample(None, -0.01, "No idea."), sample("7", -0.9)])
    assert winner == 1 and votes[0].value == "7" and votes[1].value is None
    winner, votes = tally(
        [
            sample(None, -0.5, "Jane Austen."),
            sample(None, -0.3, "jane  austen"),
            sample(None, 0, "Ann"),
        ]
    )
    assert votes[0].samples == (0, 1) and winner == 1


def test_an_ensemble_breaks_ties_by_its_order_of_strategies() -> None:
    members = [sample("7", None, strategy="tir"), sample("8", None, strategy="program")]
    assert tally(members, by_order=True) == (
        0,
        (Vote("7", (0,), ("tir",), None), Vote("8", (1,), ("program",), None)),
    )
    members.append(sample("8.0", None, strategy="cot"))
    winner, votes = tally(members, by_order=True)
    assert winner == 1 and votes[0] == Vote("8", (1, 2), ("program", "cot"), None)


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        tally([])


async def numbered(n: int, delay: float, fail: bool = False):
    for i in range(n):
        await asyncio.sleep(delay)
        yield TokenEvent(str(i))
    if fail:
        raise RuntimeError("sample broke")


def test_merge_interleaves_streams_and_tags_each_event() -> None:
    async def go():
        return [(i, e.text) async for i, e in merge([numbered(2, 0.01), numbered(3, 0.001)])]

    events = asyncio.run(go())
    assert sorted(events) == [(0, "0"), (0, "1"), (1, "0"), (1, "1"), (1, "2")]
    assert events[0] == (1, "0")  # the faster stream's first event came first


def test_an_error_in_one_stream_ends_the_merge_and_closes_the_others() -> None:
    closed = []

    async def endless():
        try:
            while True:
                await asyncio.sleep(0.001)
                yield TokenEvent("x")
        finally:
            closed.append(True)

    async def go():
        async for _ in merge([numbered(1, 0.01, fail=True), endless()]):
            pass

    with pytest.raises(RuntimeError, match="sample broke"):
        asyncio.run(go())
    assert closed == [True]
