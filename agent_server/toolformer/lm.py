"""The model as the Toolformer pipeline reads it: through a backend's sessions (llama.cpp's, by
default).

    LM(backend)                               encode · decode · openers
    opener_probs(shared, context, tokens)     p(a call opens next) before each of `tokens`
    logprobs(prefix, tokens)                  log p(tokens[t] | prefix, tokens[:t]) for each t
    sample(shared, context, n, …)             n continuations, sampled token by token

A session returns the next token's logits only, so where a probability is needed at every
position the tokens are fed one at a time (on llama.cpp, ~30 ms each here). `shared`, the
annotation prompt's fixed start, is read once and forked for every text (`PrefixCache`), as
the engine does with its own prompt. Samples are drawn by the engine's `TokenChooser`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from agent_server.backends import Backend
from agent_server.backends.base import Logits, Session
from agent_server.calls import Phase
from agent_server.decoding import Sampling, TokenChooser
from agent_server.engine import PrefixCache


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

    def opener_probs(
        self, shared: list[int], context: list[int], tokens: Sequence[int]
    ) -> npt.NDArray[np.float64]:
        """`probs[j]` = p(the next token opens a call | shared, context, tokens[:j])."""
        if not context:
            raise ValueError("opener_probs needs a context after the shared start")
        session = self._prefixes.open(shared)
        logits = session.feed(context)
        probs = np.zeros(len(tokens))
        for j, token in enumerate(tokens):
            probs[j] = float(_softmax(logits)[self.openers].sum())
            if j + 1 < len(tokens):
                logits = session.feed([token])
        return probs

    def logprobs(self, prefix: list[int], tokens: Sequence[int]) -> list[float]:
        """log p(tokens[t] | prefix, tokens[:t]) for each t; the prefix must not be empty."""
        if not prefix:
            raise ValueError("logprobs needs a prefix (a newline will do)")
        session = self.backend.new_session()
        logits = session.feed(prefix)
        out = []
        for t, token in enumerate(tokens):
            out.append(float(_log_softmax(logits)[token]))
            if t + 1 < len(tokens):
                logits = session.feed([token])
        return out

    def sample(
        self,
        shared: list[int],
        context: list[int],
        n: int,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        seed: int = 0,
        done: Callable[[str], bool] = lambda _: False,
    ) -> list[str]:
        """`n` continuations of `shared + context`, each until `done(text)` or the token limit."""
        base = self._prefixes.open(shared)
        first = base.feed(context)
        chooser = TokenChooser(
            self.backend.vocab, Sampling(temperature=temperature, seed=seed), (), 0
        )
        return [
            self._continue(_fork(base) if k + 1 < n else base, first, chooser, max_new_tokens, done)
            for k in range(n)
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


def _fork(session: Session) -> Session:
    fork: Callable[[], Any] = getattr(session, "fork")  # noqa: B009 (every backend here has it)
    forked: Session = fork()
    return forked


def _log_softmax(logits: Logits) -> npt.NDArray[np.float64]:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - float(np.log(np.exp(shifted).sum()))


def _softmax(logits: Logits) -> npt.NDArray[np.float64]:
    return np.exp(_log_softmax(logits))
