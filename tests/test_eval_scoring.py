"""The evals' scoring rules: numbers in answers, tolerance, SQuAD matching, majority, percentile."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from agent_server.core.numbers import (
    as_number,
    first_number,
    last_number,
    last_number_text,
    majority,
    numbers,
    same_number,
    written_as,
)
from agent_server.evals.scoring import (
    contains_answer,
    exact_match,
    mcnemar_p,
    normalise,
    percentile,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("54 - 48 = 6 bottle caps.", [54, 48, 6]),
        ("54-48", [54, 48]),
        ("It is -2, not 3.5.", [-2, 3.5]),
        ("(-3)", [-3]),
        ("1,234,567.5 dollars", [1234567.5]),
        ("3,4", [3, 4]),
        ("half is 7/2", [3.5]),
        ("1/0", []),
        (".5", [0.5]),
        ("$12.50 or 50%", [12.5, 50]),
        ("on 3/4/2020", []),
        ("£2340/month", [2340]),  # a rate: the slash is not a fraction's
        ("the 6th", [6]),
        ("CO2 and x2", []),
        ("no number here", []),
    ],
)
def test_numbers_are_read_as_documented(text, expected):
    assert numbers(text) == expected


def test_the_answer_is_the_last_number():
    assert last_number("120 + 45 - 30 = 135 sheep.") == 135
    assert last_number("I don't know.") is None
    assert last_number(None) is None


@given(st.integers(-(10**12), 10**12))
def test_integers_with_thousands_separators_read_back(n):
    assert last_number(f"The answer is {n:,}.") == n
    assert last_number(f"= {n}") == n


@given(st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)))
def test_decimals_read_back_within_the_tolerance(x):
    assert same_number(last_number(f"about {x:.3f} units"), x)


def test_tolerance_is_relative_and_absolute():
    assert same_number(1000.0, 1000.09)  # within 1e-4 relative
    assert not same_number(1000.0, 1000.2)
    assert same_number(0.0, 1e-7)  # within 1e-6 absolute
    assert not same_number(0.0, 1e-5)
    assert not same_number(None, 0.0)


def test_a_result_is_stated_as_itself_or_rounded_to_the_decimals_written():
    assert written_as(3990, "The cost is 3,990.")
    assert written_as(0.2857, "about 0.29")
    assert written_as(2.5, "2.50 each")
    assert not written_as(6.6, "about 7")  # an integer is not a rounding of 6.6
    assert not written_as(3990, "no idea")


def test_squad_normalisation_and_matching():
    assert normalise("The  Great North Run!") == "great north run"
    assert exact_match("the Great North Run.", ["Great North Run", "GNR"])
    assert not exact_match("It is the Great North Run.", ["Great North Run"])
    assert contains_answer("It is the Great North Run.", ["Great North Run"])
    assert not contains_answer("Runs north", ["north run"])
    assert not contains_answer("10,000 people", ["10"])  # whole words only
    assert not contains_answer("anything", ["the"])  # an empty gold answer never matches


@given(st.text())
def test_normalise_is_idempotent(text):
    assert normalise(normalise(text)) == normalise(text)


@given(st.text(), st.lists(st.text(), max_size=3))
def test_exact_match_implies_containment(answer, gold):
    if exact_match(answer, gold) and normalise(answer):
        assert contains_answer(answer, gold)


def test_majority_groups_within_the_tolerance_and_ties_go_to_the_first_seen():
    assert majority([5, 6, 5.0000001, None, 6.5]) == 5
    assert majority([7, 3, 3, 7]) == 7
    assert majority([None, None, 2]) == 2
    assert majority([None]) is None
    assert majority([]) is None


@given(st.lists(st.integers(0, 3), min_size=1), st.randoms())
def test_a_strict_majority_wins_in_any_order(values, random):
    counts = {v: values.count(v) for v in values}
    top = max(counts.values())
    winners = [v for v, c in counts.items() if c == top]
    shuffled = list(values)
    random.shuffle(shuffled)
    if len(winners) == 1:
        assert majority(shuffled) == winners[0]
    else:
        assert majority(shuffled) in winners


@given(st.lists(st.floats(0, 100), min_size=1), st.floats(0.01, 1.0))
def test_percentile_is_a_value_with_at_least_that_share_at_or_below(values, q):
    p = percentile(values, q)
    assert p in values
    assert sum(v <= p for v in values) >= math.ceil(q * len(values))
    assert sum(v < p for v in values) < math.ceil(q * len(values))


def test_percentile_by_nearest_rank():
    assert percentile(list(range(1, 21)), 0.95) == 19
    assert percentile([4.0], 0.95) == 4.0
    assert percentile([], 0.95) is None


def test_the_last_number_as_written():
    assert last_number_text("from 1,200 to 0.29 each") == "0.29"
    assert last_number_text("none") is None


def test_a_text_that_is_one_number_and_the_first_number_as_written():
    assert [as_number(t) for t in ("2340", " -0.5 ", "1,234", "108*x", "2 and 3", "")] == [
        2340,
        -0.5,
        1234,
        None,
        None,
        None,
    ]
    assert first_number("It costs £2340/month, not 12.") == (10, "2340")
    assert first_number("x2 and 3/4 then 5") == (7, "3/4")
    assert first_number("none here") is None


@pytest.mark.parametrize(
    ("gained", "lost", "p"),
    [
        (0, 0, 1.0),
        (1, 0, 1.0),
        (6, 0, 2 / 64),  # all six discordant pairs one way: 2 * (1/2)^6
        (69, 32, 0.000296),  # the README's Toolformer run 4 against its base
        (10, 10, 1.0),
    ],
)
def test_mcnemar_exact_p(gained, lost, p):
    assert mcnemar_p(gained, lost) == pytest.approx(p, rel=1e-2)
    assert mcnemar_p(lost, gained) == mcnemar_p(gained, lost)
    if gained + lost:  # the same as scipy's exact binomial test on the discordant pairs
        expected = binomtest(min(gained, lost), gained + lost, 0.5).pvalue
        assert mcnemar_p(gained, lost) == pytest.approx(expected, rel=1e-9)
