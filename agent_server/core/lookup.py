"""Prompt-lookup speculative decoding (Saxena, 2023; llama.cpp's `ngram` drafts): a guess of
the next tokens, copied from what followed the latest earlier occurrence of the last few tokens
in the prompt or the answer, is read in the same model step as the token just chosen.

An answer often restates its input: a step of a math answer repeats the problem's quantities,
a WebGPT answer its quotes. When the last n tokens (n from `max_ngram` down to `min_ngram`)
occurred before, the tokens that followed them are the guess. The session reads the chosen
token and the guess in one batch and returns the logits after each; the engine then chooses
every next token from those logits exactly as it would from a step of its own, and while its
choice equals the guessed token, the step is already done. At the first difference the guessed
tokens from there on are forgotten (their cells removed from the KV cache).

Nothing about the choice changes: the same rules on logits of the same prefix, one draw of the
random generator per token; a guess only saves steps. Greedy answers are therefore the same
tokens with the lookup on and off, and sampled ones keep their distribution (the guess is never
accepted on its own, only when the sampled token is that token), as far as the logits are the
same. llama.cpp's arithmetic may not keep them so: from 4 tokens a step it multiplies by its
matrix kernel, which rounds differently from the single-token one; up to 3 tokens a step the
bits are the same after a short context (tests/test_backends.py) but not after a long one, and
two long answers of six took another word at a near-tie in the benchmark (README, "Prompt
lookup"), as batching concurrent answers can.

Off by default (`Settings.prompt_lookup`): on 2 cores a step of several tokens costs nearly as
many single steps, and benchmarks/lookup.py measured no speed-up (README, "Prompt lookup").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent_server.backends.base import Logits, Session, VerifyingSession


@dataclass(frozen=True)
class LookupConfig:
    # Tokens guessed at most per step. On 2 cores reading 2 tokens costs 1.4x a step of one and
    # 4 tokens 2.2x, so long guesses pay only when mostly right; up to 2, a step stays on
    # llama.cpp's single-token kernel.
    max_draft: int = 2
    # The shortest and longest match looked up; a one-token match guesses too often wrongly.
    min_ngram: int = 2
    max_ngram: int = 4


@dataclass
class LookupStats:
    """How the guesses went: in one answer, or in all of an engine's (`Engine.lookup_totals`)."""

    steps: int = 0  # model steps taken (feeds)
    drafted: int = 0  # tokens guessed
    accepted: int = 0  # guessed tokens the answer then chose

    def add(self, other: LookupStats) -> None:
        self.steps += other.steps
        self.drafted += other.drafted
        self.accepted += other.accepted


class NgramIndex:
    """Where each n-gram of a token history last occurred, to find what followed it."""

    def __init__(self, config: LookupConfig) -> None:
        self._config = config
        self.tokens: list[int] = []
        # n-gram → the index of the token that followed its latest occurrence
        self._next: dict[tuple[int, ...], int] = {}

    def extend(self, token_ids: Sequence[int]) -> None:
        for token in token_ids:
            self.tokens.append(token)
            end = len(self.tokens) - 1  # the n-grams ending just before `token` are followed by it
            for n in range(self._config.min_ngram, self._config.max_ngram + 1):
                if end - n >= 0:
                    self._next[tuple(self.tokens[end - n : end])] = end

    def guess(self) -> list[int]:
        """The tokens that followed the latest earlier occurrence of the longest suffix that
        occurred before, at most `max_draft` of them; [] if none did."""
        size = len(self.tokens)
        for n in range(self._config.max_ngram, self._config.min_ngram - 1, -1):
            if size < n:
                continue
            start = self._next.get(tuple(self.tokens[size - n :]))
            if start is not None:
                return self.tokens[start : start + self._config.max_draft]
        return []


class Speculator:
    """A session's `feed` that reads a guess of the next tokens along with each chosen token.

    Feed it what the engine would feed the session; it answers with the same logits, from a
    step already taken when the token fed is the one guessed there.
    """

    def __init__(
        self, session: VerifyingSession, history: Sequence[int], config: LookupConfig
    ) -> None:
        self._session = session
        self._index = NgramIndex(config)
        self._index.extend(history)
        # Guessed tokens in the cache beyond what was chosen, each with the logits after it.
        self._pending: list[tuple[int, Logits]] = []
        self.stats = LookupStats()

    def feed(self, token_ids: Sequence[int]) -> Logits:
        ids = list(token_ids)
        if len(ids) == 1 and self._pending and self._pending[0][0] == ids[0]:
            _, logits = self._pending.pop(0)
            self._index.extend(ids)
            self.stats.accepted += 1
            return logits
        self.forget_guesses()
        self._index.extend(ids)
        guess = self._index.guess()
        self.stats.steps += 1
        if not guess:
            return self._session.feed(ids)
        rows = self._session.feed_each(ids + guess)
        self.stats.drafted += len(guess)
        self._pending = [(token, rows[len(ids) + i]) for i, token in enumerate(guess)]
        chosen: Logits = rows[len(ids) - 1]
        return chosen

    def forget_guesses(self) -> None:
        """Drop the guessed tokens not chosen from the session (at a difference, and at the end:
        the session then holds exactly the answer)."""
        if self._pending:
            self._session.forget(len(self._pending))
            self._pending = []


@dataclass
class Feeder:
    """What the decoding loop feeds: the session itself, or a speculator around it."""

    session: Session
    speculator: Speculator | None = field(default=None)

    @classmethod
    def around(
        cls, session: Session, history: Sequence[int], config: LookupConfig | None
    ) -> Feeder:
        if config is None or not isinstance(session, VerifyingSession):
            return cls(session)
        return cls(session, Speculator(session, history, config))

    def feed(self, token_ids: Sequence[int]) -> Logits:
        if self.speculator is None:
            return self.session.feed(token_ids)
        return self.speculator.feed(token_ids)
