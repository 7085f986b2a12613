"""The model as the Toolformer pipeline reads it: through a backend's sessions (llama.cpp's, by
default).

    LM(backend)                           encode · decode · openers
    read(shared, context) → Reading       the model having read `shared` then `context`
    extend(reading, tokens) → Reading     … and then `tokens` (the reading itself unchanged)
    opener_probs(reading, tokens)         p(a call opens next) before each of `tokens`
    logprobs(reading, tokens)             log p(tokens[t] | reading, tokens[:t]) for each t
    sample(reading, n, …)                 n continuations, sampled token by token

A reading is a session and its next-token logits; every use forks it, so one reading of a text
up to a position serves its samples and all its losses. `shared`, the prompt every text is read
after, is read once and forked (`PrefixCache`), as the engine does with its own prompt. A
session returns the next token's logits only, so where a probability is needed at every
position the tokens are fed one at a time (on llama.cpp, ~30 ms each here). Samples are drawn
by the engine's `TokenChooser`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent_server.backends import Backend
from agent_server.backends.base import Logits, Session
from agent_server.core.decoding import Sampling, TokenChooser
from agent_server.core.grammar import Phase
from agent_server.core.prefix_cache import PrefixCache


@dataclass(frozen=True)
class Reading:
    session: Session
    logits: Logits  # for the next token


class LM:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._prefixes = PrefixCache(backend)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(ids)

    @property
    def openers(self) -> npt.NDArray[np.int64]:
        """Tokens that open a call: `[`, optionally after white space."""
        return self.backend.vocab.call_openers()

    def read(self, shared: list[int], context: list[int]) -> Reading:
        """The model having read `shared` (from the cache) and then `context`."""
        if not shared + context:
            raise ValueError("nothing to read: the model needs at least one token")
        # The cache holds sessions, not logits: the last token is read again for them.
        head, tail = (shared[:-1], shared[-1:] + context) if shared else ([], context)
        session = self._prefixes.open(head)
        return Reading(session, session.feed(tail))

    def extend(self, reading: Reading, tokens: Sequence[int]) -> Reading:
        session = reading.session.fork()
        return Reading(session, session.feed(list(tokens)) if tokens else reading.logits)

    def opener_probs(self, reading: Reading, tokens: Sequence[int]) -> npt.NDArray[np.float64]:
        """`probs[j]` = p(the next token opens a call | reading, tokens[:j])."""
        session, logits = reading.session.fork(), reading.logits
        probs = np.zeros(len(tokens))
        for j, token in enumerate(tokens):
            probs[j] = float(_softmax(logits)[self.openers].sum())
            if j + 1 < len(tokens):
                logits = session.feed([token])
        return probs

    def logprobs(self, reading: Reading, tokens: Sequence[int]) -> list[float]:
        """log p(tokens[t] | reading, tokens[:t]) for each t."""
        session, logits = reading.session.fork(), reading.logits
        out = []
        for t, token in enumerate(tokens):
            out.append(float(_log_softmax(logits)[token]))
            if t + 1 < len(tokens):
                logits = session.feed([token])
        return out

    def sample(
        self,
        reading: Reading,
        n: int,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        seed: int = 0,
        done: Callable[[str], bool] = lambda _: False,
    ) -> list[str]:
        """`n` continuations of `reading`, each until `done(text)` or the token limit."""
        chooser = TokenChooser(
            self.backend.vocab, Sampling(temperature=temperature, seed=seed), (), 0
        )
        return [
            self._continue(reading.session.fork(), reading.logits, chooser, max_new_tokens, done)
            for _ in range(n)
        ]

    def _continue(
        self,
        session: Session,
        logits: Logits,
        chooser: TokenChooser,
        max_new_tokens: int,
        done: Callable[[str], bool],
    ) -> str:
        ids: list[int] = []
        eos = self.backend.vocab.eos_ids
        for _ in range(max_new_tokens):
            token = chooser.choose(logits, Phase.TEXT, "", 0)
            if token in eos:
                break
            ids.append(token)
            if done(self.decode(ids)):
                break
            logits = session.feed([token])
        return self.decode(ids)


def _log_softmax(logits: Logits) -> npt.NDArray[np.float64]:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - float(np.log(np.exp(shifted).sum()))


def _softmax(logits: Logits) -> npt.NDArray[np.float64]:
    return np.exp(_log_softmax(logits))
