"""The filter that decides whether a call helped (Toolformer, section 2, "Filtering API calls").

For a text x = x_1 … x_n and a call c at position i with result r, the weighted loss of the
tokens from i on, with a prefix z given before the text:

    L_i(z) = − Σ_{j ≥ i} w_{j−i} · log p(x_j | z, x_1 … x_{j−1})

with w_t = w̃_t / Σ_s w̃_s and w̃_t = max(0, 1 − 0.2·t): the next five tokens count, nearer ones
more. The call is kept when

    L_i⁻ − L_i⁺ ≥ τ_f,   L_i⁺ = L_i(e(c, r)),   L_i⁻ = min(L_i(ε), L_i(e(c, ε)))

i.e. when the call *with its result* makes the following tokens more likely, by τ_f, than both
no call at all and the call without its result (which rules out calls that help only by
restating the text). e(c, r) is the call's text, `[Calculator(400/1400) → 0.2857]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DECAY = 0.2  # the paper's: weights fall to zero after 1 / DECAY = 5 tokens


def weights(decay: float = DECAY) -> tuple[float, ...]:
    """w_0, w_1, … until the raw weight reaches zero, normalised to sum to 1."""
    raw: list[float] = []
    while (w := 1.0 - decay * len(raw)) > 1e-9:
        raw.append(w)
    total = sum(raw)
    return tuple(w / total for w in raw)


def weighted_loss(logprobs: Sequence[float], decay: float = DECAY) -> float:
    """L_i from log p(x_j | …) for j = i, i+1, …; a text that ends early counts what there is."""
    return -sum(w * lp for w, lp in zip(weights(decay), logprobs, strict=False))


@dataclass(frozen=True)
class Losses:
    """L_i under the three prefixes the filter compares."""

    with_result: float  # L_i(e(c, r))
    no_call: float  # L_i(ε)
    call_only: float  # L_i(e(c, ε))

    @property
    def gain(self) -> float:
        """L_i⁻ − L_i⁺: how much the result helped over the better of the alternatives."""
        return min(self.no_call, self.call_only) - self.with_result

    def keep(self, tau_f: float) -> bool:
        return self.gain >= tau_f
