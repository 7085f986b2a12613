"""OpenAI's Responses API (`/v1/responses`) over real HTTP on loopback, driven by OpenAI's own
Python client: text in and out, plain and streamed, with the scripted model and the Echo tool."""

from __future__ import annotations

import json

import openai
import pytest

CALL_REPLY = ['It is [Echo("olleh")', " hello."]


def test_a_response_holds_the_answer_without_call_syntax_and_the_trace(oai, backend):
    backend.queue(CALL_REPLY)
    response = oai.responses.create(model="agent-server", input="Say hello backwards.")
    assert response.status == "completed" and response.object == "response"
    assert response.id.startswith("resp_") and response.model == "scripted"
    assert response.output_text == "It is hello."
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    trace = response.model_extra["agent"]["trace"]
    assert [(t["tool"], t["result"]) for t in trace] == [("Echo", "hello")]
    assert "Say hello backwards." in backend.prompts[0]


def test_a_streamed_response_sends_the_semantic_events_in_order(oai, backend):
    backend.queue(CALL_REPLY)
    events = list(oai.responses.create(model="agent-server", input="Say hello.", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "It is hello." == events[-1].response.output_text
    assert "[" not in deltas


def test_input_messages_with_text_parts_make_the_conversation(oai, backend):
    backend.queue("Paris.")
    response = oai.responses.create(
        model="agent-server",
        input=[
            {"role": "user", "content": "Capital of Italy?"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Rome."}]},
            {"role": "user", "content": [{"type": "input_text", "text": "And of France?"}]},
        ],
    )
    assert response.output_text == "Paris."
    prompt = backend.prompts[0]
    assert (
        prompt.index("Capital of Italy?") < prompt.index("Rome.") < prompt.index("And of France?")
    )


def test_a_token_budget_that_runs_out_is_an_incomplete_response(oai, backend):
    backend.queue("abcdefgh")
    response = oai.responses.create(model="agent-server", input="Go on.", max_output_tokens=3)
    assert response.status == "incomplete" and response.output_text == "abc"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize(
    ("kwargs", "problem", "param"),
    [
        (
            {"tools": [{"type": "function", "name": "f", "parameters": {"type": "string"}}]},
            "must be an object",
            "tools[0].parameters",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "array"}}}},
            "root of the schema",
            "text.format.schema",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "Hi."},
                    {"type": "function_call_output", "call_id": "call_nobody", "output": "1"},
                ]
            },
            "answers no call",
            "input[1].tool_call_id",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "text only",
            "input[0].content[0]",
        ),
        ({"input": [{"role": "assistant", "content": "Hi."}]}, "must be from the user", None),
        ({"max_output_tokens": 0}, "greater than or equal to 1", "max_output_tokens"),
    ],
)
def test_bad_requests_are_400_in_openai_shape(oai, kwargs, problem, param):
    kwargs = {"model": "agent-server", "input": "Hi."} | kwargs
    with pytest.raises(openai.BadRequestError) as refused:
        oai.responses.create(**kwargs)
    assert problem in refused.value.message
    if param is not None:
        assert refused.value.param == param


def test_an_unknown_model_is_404(oai):
    with pytest.raises(openai.NotFoundError) as missing:
        oai.responses.create(model="gpt-5", input="Hi.")
    assert "does not exist" in missing.value.message


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city now.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
CALLING = ['Let me look. [get_weather({"city": "Paris"})', " never written."]


def test_a_function_call_is_an_output_item_beside_the_text(oai, backend):
    backend.queue(CALLING)
    response = oai.responses.create(
        model="agent-server", input="Weather in Paris?", tools=[WEATHER]
    )
    message, call = response.output
    assert message.type == "message" and response.output_text == "Let me look."
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("call_") and json.loads(call.arguments) == {"city": "Paris"}
    assert response.tools[0].name == "get_weather"


def test_a_streamed_function_call_sends_its_item_and_arguments(oai, backend):
    backend.queue(['get_weather({"city": "Paris"})', " never written."])  # after the `[` opened
    events = list(
        oai.responses.create(
            model="agent-server",
            input="Weather in Paris?",
            tools=[WEATHER],
            tool_choice="required",
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, done, completed = events[2].item, events[5].item, events[-1].response
    assert added.type == "function_call" and added.name == "get_weather"
    assert json.loads(events[4].arguments) == {"city": "Paris"}
    assert done.call_id == added.call_id == completed.output[0].call_id


def test_the_function_s_output_continues_the_answer(oai, backend):
    backend.queue(CALLING, " It is 18 °C.")
    first = oai.responses.create(model="agent-server", input="Weather in Paris?", tools=[WEATHER])
    call = first.output[1]
    second = oai.responses.create(
        model="agent-server",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 °C"},
        ],
    )
    assert second.output_text == "It is 18 °C."
    assert [item.type for item in second.output] == ["message"]
    assert backend.prompts[1].endswith('[get_weather({"city": "Paris"}) → 18 °C]')


def test_a_named_function_is_called(oai, backend):
    backend.queue('{"city": "Rome"})')
    response = oai.responses.create(
        model="agent-server",
        input="Weather?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    (call,) = response.output
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Rome"}
