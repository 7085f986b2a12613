"""One request, one path (`agent_server.answering`): what every caller (both routes, the CLI,
the evals) builds and hands over, with the scripted model and test-double tools."""

from __future__ import annotations

import asyncio

import pytest

from agent_server import answering
from agent_server.answering import AnswerRequest, Function
from agent_server.core.decoding import Sampling
from agent_server.core.engine import final_event
from agent_server.core.events import ClientCall
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


WEATHER = Function(
    "get_weather",
    "The weather in a city now.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def test_a_call_to_a_client_function_ends_the_answer_for_the_client(make_engine):
    engine, backend = make_engine(['It is [get_weather({"city": "Paris"})', " never written."])
    asked = AnswerRequest("Weather in Paris?", functions=[WEATHER])
    final = asyncio.run(final_event(answering.answer(asked, engine, None)))
    assert final.stop_reason == "tool_calls"
    assert final.client_call == ClientCall("get_weather", '{"city": "Paris"}')
    assert final.answer == "It is" and final.trace == ()
    assert "get_weather" in backend.prompts[0] and "city: string" in backend.prompts[0]


def test_the_client_s_result_comes_back_as_the_answer_so_far_and_the_model_goes_on(make_engine):
    engine, backend = make_engine(" 18 °C and sunny.")
    so_far = 'It is [get_weather({"city": "Paris"}) → {"temp": 18}]'
    asked = AnswerRequest("Weather in Paris?", functions=[WEATHER], continuation=so_far)
    final = asyncio.run(final_event(answering.answer(asked, engine, None)))
    assert backend.prompts[0].endswith(so_far)  # read as the answer's start
    assert final.stop_reason == "eos" and final.answer == "18 °C and sunny."


@pytest.mark.parametrize(
    ("choice", "forced", "prefill"),
    [("required", None, "["), ("auto", "get_weather", "[get_weather(")],
)
def test_a_required_or_named_call_is_opened_for_the_model(make_engine, choice, forced, prefill):
    engine, backend = make_engine('{"city": "Oslo"})')
    asked = AnswerRequest(
        "Oslo?",
        functions=[WEATHER],
        tool_choice=choice,
        forced=forced,  # type: ignore[arg-type]
    )
    reply = '{"city": "Oslo"})' if forced else 'get_weather({"city": "Oslo"})'
    engine, backend = make_engine(reply)
    final = asyncio.run(final_event(answering.answer(asked, engine, None)))
    assert backend.prompts[0].endswith(prefill)
    assert final.client_call == ClientCall("get_weather", '{"city": "Oslo"}')
    plan = answering.plan(asked, engine)
    assert plan is not None and list(plan.tools) == ["get_weather"]  # no service tools then


def test_tool_choice_none_offers_no_function_and_a_missing_forced_one_is_refused(make_engine):
    engine, backend = make_engine("Just text.")
    asked = AnswerRequest("Oslo?", functions=[WEATHER], tool_choice="none")
    final = asyncio.run(final_event(answering.answer(asked, engine, None)))
    assert "get_weather" not in backend.prompts[0] and final.client_call is None
    with pytest.raises(BadRequest, match="'nope', which is not among the tools"):
        AnswerRequest("Oslo?", functions=[WEATHER], forced="nope")
    with pytest.raises(BadRequest, match="strategy 'toolformer'"):
        answering.plan(AnswerRequest("2+2?", functions=[WEATHER], strategy="cot"), engine)
