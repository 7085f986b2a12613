"""Numbers in answers: read from text, compared with a tolerance, and the majority of several.

The service reads an answer's value with these (`strategies`, `consistency`), and the evals score
with the same rules, so a vote and a score cannot disagree about what a number is. The rules,
kept simple on purpose:

- An answer's number is the **last** number in its text (the model states its result last:
  "54 - 48 = 6 bottle caps."). A number is `1,234` (commas only between groups of three), `3.5`,
  `-2` (a minus not glued to a word or digit, so `54-48` is 54 and 48) or a fraction `7/2`
  (no spaces; "56 / 14" is two numbers). `50%` is 50, `$12.50` is 12.5. Left out: words
  ("six"), exponents, and mixed numbers ("1 1/2").
- Two numbers are the same within a relative 1e-4 or an absolute 1e-6.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

REL_TOL = 1e-4
ABS_TOL = 1e-6

_NUMBER = re.compile(
    r"(?:(?<![\w.])(-))?"  # a sign, unless glued to what comes before ("54-48" is 54 and 48)
    r"(?<![\w./])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:/(\d+(?:\.\d+)?))?"
    r"(?!\d|/\d|,\d{3})"  # no number stops inside another: "1,234" is never 1 and 234
)


def numbers(text: str) -> list[float]:
    """Every number in `text`, in order (the rules are the module's)."""
    found = []
    for sign, digits, denominator in _NUMBER.findall(text):
        value = float(digits.replace(",", ""))
        if denominator:
            if float(denominator) == 0:
                continue  # "1/0" is not a number
            value /= float(denominator)
        found.append(-value if sign else value)
    return found


def last_number(text: str | None) -> float | None:
    """The answer's number: the last one in `text`, or None if it has none."""
    found = numbers(text or "")
    return found[-1] if found else None


def last_number_text(text: str) -> str | None:
    """The last number in `text` as it is written there, or None."""
    written = [m.group(0) for m in _NUMBER.finditer(text) if numbers(m.group(0))]
    return written[-1] if written else None


def as_number(text: str) -> float | None:
    """The value of `text` if it is one number and nothing else ("2340", "-0.5"), else None."""
    match = _NUMBER.fullmatch(text.strip())
    found = numbers(match.group(0)) if match else []
    return found[0] if found else None


def first_number(text: str) -> tuple[int, str] | None:
    """Where the first number in `text` starts and how it is written there, or None."""
    for match in _NUMBER.finditer(text):
        if numbers(match.group(0)):
            return match.start(), match.group(0)
    return None


def same_number(a: float | None, b: float | None) -> bool:
    """Equal within the tolerance (relative 1e-4, absolute 1e-6); None equals nothing."""
    if a is None or b is None:
        return False
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def written_as(value: float, text: str) -> bool:
    """Whether `text` states `value`: the same number, or `value` rounded to the decimals a
    number in `text` is written with (0.2857 stated as 0.29; 6.6 is not stated as 7)."""
    for written in _NUMBER.finditer(text):
        number = numbers(written.group(0))
        if not number:
            continue
        if same_number(number[0], value):
            return True
        digits = written.group(2)
        decimals = len(digits.split(".")[1]) if "." in digits and not written.group(3) else 0
        if decimals and same_number(round(value, decimals), number[0]):
            return True
    return False


def majority(values: Sequence[float | None]) -> float | None:
    """The most common number (numbers within the tolerance count as one; the first seen of a
    group stands for it); a tie goes to the group seen first; None never wins."""
    groups: list[tuple[float, int]] = []
    for value in values:
        if value is None:
            continue
        for i, (seen, count) in enumerate(groups):
            if same_number(seen, value):
                groups[i] = (seen, count + 1)
                break
        else:
            groups.append((value, 1))
    if not groups:
        return None
    best = max(groups, key=lambda group: group[1])  # max keeps the first of equal counts
    return best[0]
