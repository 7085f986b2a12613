"""The filter's arithmetic, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from agent_server.toolformer.filtering import Losses, weighted_loss, weights


def test_the_papers_weights():
    # w̃ = 1, 0.8, 0.6, 0.4, 0.2 (then 0), sum 3.0.
    assert weights() == pytest.approx((1 / 3, 0.8 / 3, 0.2, 0.4 / 3, 0.2 / 3))
    assert sum(weights()) == pytest.approx(1.0)
    assert weights(0.5) == pytest.approx((1 / 1.5, 0.5 / 1.5))


def test_weighted_loss_by_hand():
    # p = 1/2, 1/4, 1/8, 1, 1 → log p = -ln2, -2 ln2, -3 ln2, 0, 0; a sixth token has weight 0.
    logprobs = [-math.log(2), -2 * math.log(2), -3 * math.log(2), 0.0, 0.0, -100.0]
    expected = math.log(2) * (1 * 1 + 2 * 0.8 + 3 * 0.6) / 3.0  # = ln2 · 4.4 / 3 ≈ 1.016616
    assert weighted_loss(logprobs) == pytest.approx(expected)
    assert weighted_loss(logprobs) == pytest.approx(1.016616, abs=1e-6)
    # A text ending two tokens after the position counts those two only.
    assert weighted_loss(logprobs[:2]) == pytest.approx(math.log(2) * (1 + 1.6) / 3.0)


def test_the_filter_compares_against_the_better_alternative():
    # With the result: 0.4; no call: 1.2; the call alone: 0.9 → L⁻ = 0.9, gain 0.5.
    losses = Losses(with_result=0.4, no_call=1.2, call_only=0.9)
    assert losses.gain == pytest.approx(0.5)
    assert losses.keep(0.5) and not losses.keep(0.51)
    # A call that helps only by being there (its result adds nothing) is dropped.
    restating = Losses(with_result=0.6, no_call=1.5, call_only=0.6)
    assert restating.gain == pytest.approx(0.0) and not restating.keep(0.1)
    # A result that hurts has a negative gain.
    assert Losses(with_result=2.0, no_call=1.0, call_only=1.5).gain == pytest.approx(-1.0)
