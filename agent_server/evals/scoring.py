"""How an answer is scored: SQuAD's exact match and containment, a percentile, a mean, a share,
McNemar's exact test for two systems answering the same questions.
Numbers in answers are read and compared by `agent_server.core.numbers`, the service's own rules.

All pure functions.

- Answers to a text question follow SQuAD v1.1's evaluation (Rajpurkar et al., 2016): lower
  case, no punctuation, no articles, single spaces; exact match against any gold answer, and
  containment: a gold answer appears in the answer as whole words.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalise(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, gold: Iterable[str]) -> bool:
    """The normalised answer equals a normalised gold answer."""
    said = normalise(answer)
    return any(said == normalise(g) for g in gold)


def contains_answer(text: str, gold: Iterable[str]) -> bool:
    """A normalised gold answer appears in the normalised `text` as whole words."""
    haystack = f" {normalise(text)} "
    return any(f" {normalise(g)} " in haystack for g in gold if normalise(g))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-th quantile (0 < q ≤ 1): the smallest value with at least a share q
    of `values` at or below it; None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, or None when there are no values."""
    return sum(values) / len(values) if values else None


def share(hits: float, total: float) -> float | None:
    """hits / total, or None when there is nothing to divide by."""
    return hits / total if total else None


def mcnemar_p(gained: int, lost: int) -> float:
    """McNemar's exact test, two-sided: the chance of a split of the discordant pairs at least as
    uneven as `gained` against `lost` if either system were as likely to win each of them."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)
