"""Prompt lookup: the n-gram guess, and a speculator that hands back exactly the logits the
session itself would have, whatever its guesses. The session here is a toy model (the next
token's logits are a function of the tokens so far) that can check a guess in one step; the
real llama.cpp session is tested in tests/test_backends.py."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from agent_server.backends.base import Logits, VerifyingSession
from agent_server.core.lookup import Feeder, LookupConfig, NgramIndex, Speculator

VOCAB = 11


def toy_logits(history: Sequence[int]) -> Logits:
    """A deterministic 'model': mostly repeats what followed the last token before, with a
    hash of the whole history mixed in so that guesses are sometimes wrong."""
    logits = np.zeros(VOCAB, dtype=np.float32)
    logits[(3 * history[-1] + 1) % VOCAB] = 2.0
    logits[(sum(history) * 5) % VOCAB] += 1.5
    return logits


class ToySession:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.steps = 0  # model steps: calls of feed or feed_each

    @property
    def length(self) -> int:
        return len(self.tokens)

    def feed(self, token_ids: Sequence[int]) -> Logits:
        self.steps += 1
        self.tokens.extend(token_ids)
        return toy_logits(self.tokens)

    def feed_each(self, token_ids: Sequence[int]) -> Logits:
        self.steps += 1
        rows = []
        for token in token_ids:
            self.tokens.append(token)
            rows.append(toy_logits(self.tokens))
        return np.stack(rows)

    def forget(self, count: int) -> None:
        del self.tokens[len(self.tokens) - count :]

    def fork(self) -> ToySession:
        raise NotImplementedError

    def save(self) -> bytes | None:
        return None


def greedy(feed, prompt: list[int], steps: int) -> list[int]:
    logits = feed(prompt)
    out = []
    for _ in range(steps):
        token = int(np.argmax(logits))
        out.append(token)
        logits = feed([token])
    return out


def test_the_guess_is_what_followed_the_latest_earlier_occurrence_of_the_longest_suffix() -> None:
    index = NgramIndex(LookupConfig(max_draft=3, min_ngram=2, max_ngram=3))
    index.extend([5, 6, 7, 8, 9, 1, 6, 7, 2, 3, 4, 6, 7])
    # "6 7" followed by 2 3 4 most recently (after "1 6 7"), but no 3-gram "4 6 7" before
    assert index.guess() == [2, 3, 4]
    index = NgramIndex(LookupConfig(max_draft=3, min_ngram=2, max_ngram=3))
    index.extend([1, 2, 3, 9, 2, 3, 8, 1, 2, 3])
    # "2 3" was last followed by 8, but "1 2 3" by 9: the longer match wins
    assert index.guess() == [9, 2, 3]


def test_no_guess_without_an_earlier_match_and_never_longer_than_asked() -> None:
    index = NgramIndex(LookupConfig(max_draft=2, min_ngram=2, max_ngram=4))
    index.extend([1, 2, 3, 4])
    assert index.guess() == []
    index.extend([1, 2])
    assert index.guess() == [3, 4]
    index.extend([3])
    assert index.guess() == [4, 1]


@pytest.mark.parametrize("draft", [1, 2, 4, 8])
def test_greedy_tokens_are_the_same_with_guesses_and_fewer_steps_are_taken(draft: int) -> None:
    prompt = [1, 2, 3, 4, 1, 2, 3, 5, 6, 1, 2]
    plain = ToySession()
    expected = greedy(plain.feed, prompt, 60)
    toy = ToySession()
    speculator = Speculator(toy, [], LookupConfig(max_draft=draft))
    assert greedy(speculator.feed, prompt, 60) == expected
    assert speculator.stats.drafted > 0 and 0 < speculator.stats.accepted
    assert speculator.stats.accepted < speculator.stats.drafted  # some guesses were wrong
    assert toy.steps < plain.steps  # accepted guesses saved steps
    speculator.forget_guesses()
    assert toy.tokens == prompt + expected  # exactly what was chosen and fed, no guess


def test_a_feed_that_is_not_the_guessed_token_drops_the_guess_first() -> None:
    toy = ToySession()
    speculator = Speculator(toy, [], LookupConfig(max_draft=3))
    speculator.feed([1, 2, 3, 1, 2])  # guesses 3 1 2 after "1 2"
    assert toy.tokens == [1, 2, 3, 1, 2, 3, 1, 2]
    logits = speculator.feed([7, 8])  # a spliced result, say
    assert toy.tokens == [1, 2, 3, 1, 2, 7, 8]
    assert np.array_equal(logits, toy_logits([1, 2, 3, 1, 2, 7, 8]))


def test_the_feeder_speculates_only_on_a_session_that_can_check_a_guess() -> None:
    class Plain:
        length = 0

        def feed(self, token_ids: Sequence[int]) -> Logits:
            return toy_logits(list(token_ids))

        def fork(self) -> Plain:
            return self

        def save(self) -> None:
            return None

    assert isinstance(ToySession(), VerifyingSession)
    assert Feeder.around(ToySession(), [1], LookupConfig()).speculator is not None
    assert Feeder.around(Plain(), [1], LookupConfig()).speculator is None
    assert Feeder.around(ToySession(), [1], None).speculator is None
