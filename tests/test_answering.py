"""One request, one path (`agent_server.answering`): what every caller (both routes, the CLI,
the evals) builds and hands over, with the scripted model and test-double tools."""

from __future__ import annotations

import asyncio

import pytest

from agent_server import answering
from agent_server.answering import AnswerRequest
from agent_server.core.decoding import Sampling
from agent_server.core.engine import final_event
from agent_server.errors import BadRequest


def test_webgpt_mode_refuses_the_toolformer_options():
    for option in ({"strategy": "cot"}, {"samples": 2}, {"tools": []}, {"max_calls": 1}):
        with pytest.raises(BadRequest, match="apply to mode 'toolformer'"):
            AnswerRequest("Who?", mode="webgpt", **option)  # type: ignore[arg-type]
    assert AnswerRequest("Who?", mode="webgpt").mode == "webgpt"


def test_the_engine_answers_with_the_request_s_history_tools_and_sampling(make_engine):
    engine, backend = make_engine("It is 4.")
    asked = AnswerRequest(
        "And twice that?",
        tools=["Echo"],
        max_calls=0,
        sampling=Sampling(max_new_tokens=64, stop=("\n",)),
        history=[("What is 1 + 1?", "It is 2.")],
    )
    plan = answering.plan(asked, engine)
    assert plan is not None and list(plan.tools) == ["Echo"] and plan.max_calls == 0
    final = asyncio.run(final_event(answering.answer(asked, engine, None)))
    assert final.answer == "It is 4."
    assert "What is 1 + 1?" in backend.prompts[0] and "It is 2." in backend.prompts[0]


def test_an_unknown_tool_or_strategy_is_refused_before_any_work(make_engine):
    engine, backend = make_engine("never")
    with pytest.raises(BadRequest, match="unknown strategy"):
        answering.plan(AnswerRequest("q", strategy="guess"), engine)
    with pytest.raises(BadRequest, match="Nope"):
        answering.plan(AnswerRequest("q", tools=["Nope"]), engine)
    assert backend.prompts == []


def test_webgpt_mode_without_a_browser_says_so(make_engine):
    engine, _ = make_engine()
    asked = AnswerRequest("Who?", mode="webgpt")
    assert answering.plan(asked, engine) is None
    with pytest.raises(BadRequest, match="webgpt mode is not available"):
        answering.answer(asked, engine, None)
