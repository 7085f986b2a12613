"""Choosing the next token: sampling settings plus the rules that make tool use work.

1. Toolformer's call rule: outside a call, a call may begin whenever a `[` token is among the
   `call_top_k` most likely next tokens, not only when it is the most likely (Schick et al. 2023
   used k = 10). k = 0 turns the rule off; `[` then has to win on its own.
2. While the tool's name is being written, only tokens that continue a registered name (and
   its `(`) are allowed, so a small model cannot misspell a tool.

3. With inline tools registered, `[` is reserved for calls (as in Toolformer), and its openers
   are masked when no calls are left in the budget (the model writes plain text) and for the
   one token right after a result (the model uses a result before it may call again; without
   this, the top-k rule chains calls: `[A(x) → 1] [A(1) → 1] …`).

A strategy whose calls are fenced programs (`strategies.Strategy.inline` false) gets none of
these rules: `[` is text there, as in LaTeX's display math.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent_server.backends.base import Logits, Vocabulary
from agent_server.core.grammar import Phase


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens. Temperature 0 is greedy and ignores top_p and seed."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    max_new_tokens: int | None = None  # None: the strategy's budget
    stop: tuple[str, ...] = ()


# Below this, sampling is greedy in all but floating-point trouble (logits / 1e-300 overflow).
MIN_TEMPERATURE = 1e-3


class TokenChooser:
    """Picks one token from logits given where the scanner is in the call grammar."""

    def __init__(
        self, vocab: Vocabulary, sampling: Sampling, tool_names: tuple[str, ...], call_top_k: int
    ) -> None:
        self._vocab = vocab
        self._sampling = sampling
        self._names = tuple(sorted(tool_names))
        self._call_top_k = call_top_k if tool_names else 0
        self._rng = np.random.default_rng(sampling.seed)
        self._eos = np.fromiter(sorted(vocab.eos_ids), dtype=np.int64)

    def choose(
        self,
        logits: Logits,
        phase: Phase,
        name_so_far: str,
        calls_left: int,
        after_result: bool = False,
        calls_made: int = 0,
    ) -> int:
        logits = logits.astype(np.float32, copy=True)
        if phase is Phase.TEXT:
            openers = self._vocab.call_openers()
            if self._names and (calls_left <= 0 or after_result):
                logits = _without(logits, openers)
            if after_result:
                # A result is never the answer's last word: after a long one a small model tends
                # to end its turn at once, leaving the reader nothing but the call.
                logits = _without(logits, self._eos)
            elif self._call_top_k > 0 and openers.size:
                # Toolformer's top-k rule opens the first call. Once a result is in the text a
                # small model echoes its call again and again at k > 1, so a further call must
                # be the model's own first choice.
                k = self._call_top_k if calls_made == 0 else 1
                forced = self._opener_in_top_k(logits, openers, k)
                if forced is not None:
                    return forced
        elif phase is Phase.NAME and self._names and calls_left > 0:
            allowed = self._vocab.allowed_after(name_so_far, self._names)
            logits = _only(logits, allowed)
        return self._sample(logits)

    def pick(self, logits: Logits) -> int:
        """A token by the sampling settings alone: for logits a grammar has masked already
        (`structured`), where the call rules would fight it."""
        return self._sample(logits)

    def _opener_in_top_k(
        self, logits: Logits, openers: npt.NDArray[np.int64], k: int
    ) -> int | None:
        k = min(k, logits.size)
        top = np.argpartition(-logits, k - 1)[:k]
        top = top[np.isfinite(logits[top])]
        hits = np.intersect1d(top, openers)
        if hits.size == 0:
            return None
        return int(hits[np.argmax(logits[hits])])

    def _sample(self, logits: Logits) -> int:
        if self._sampling.temperature < MIN_TEMPERATURE:
            return int(np.argmax(logits))
        scaled = logits / self._sampling.temperature
        probs = np.exp(scaled - np.max(scaled))
        probs /= probs.sum()
        if self._sampling.top_p < 1.0:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            cut = int(np.searchsorted(cumulative, self._sampling.top_p)) + 1
            keep = order[:cut]
            nucleus = np.zeros_like(probs)
            nucleus[keep] = probs[keep]
            probs = nucleus / nucleus.sum()
        return int(self._rng.choice(probs.size, p=probs))


def _without(logits: Logits, banned: npt.NDArray[np.int64]) -> Logits:
    """Mask `banned`, unless nothing else is possible: then the engine reports the problem."""
    masked = logits.copy()
    masked[banned] = -np.inf
    return masked if np.isfinite(masked).any() else logits


def _only(logits: Logits, allowed: npt.NDArray[np.int64]) -> Logits:
    """Keep only `allowed`, unless the model gives all of them zero probability."""
    if allowed.size == 0 or not np.isfinite(logits[allowed]).any():
        return logits
    masked = np.full_like(logits, -np.inf)
    masked[allowed] = logits[allowed]
    return masked


class Detokenizer:
    """Turns a stream of token ids into text deltas, holding back half-written characters.

    Each token is decoded together with a few tokens before it and only the new text is kept,
    which is right for byte-level BPE and SentencePiece alike (the approach vLLM and TGI use).
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], context: Sequence[int] = ()) -> None:
        self._decode = decode
        self._ids = list(context)
        self._prefix = 0
        self._read = len(self._ids)

    def add(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if after.endswith("\ufffd"):
            return ""  # the rest of this character is in the next token
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]
