"""OpenAI function calling on `/v1/chat/completions`, with OpenAI's own Python client over real
HTTP on loopback; the model is scripted (what a model writes is fixed, so the protocol is what
is tested), with the Echo double as the service's own tool."""

from __future__ import annotations

import json
from typing import Any

import pytest

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "e.g. 'Paris'"}},
            "required": ["city"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
CALLING = ['It is [get_weather({"city": "Paris"})', " never written."]


def test_a_call_to_a_client_function_comes_back_as_tool_calls(oai, backend):
    backend.queue(CALLING)
    reply = oai.chat.completions.create(model="agent-server", messages=QUESTION, tools=[WEATHER])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert choice.message.content == "It is"
    prompt = backend.prompts[0]
    assert "get_weather" in prompt and "The weather in a city now." in prompt
    assert '{"city": "Paris"}' in prompt  # the example call, from the description's "e.g."


def test_the_tool_result_round_trip_continues_the_same_answer(oai, backend):
    backend.queue(CALLING, " 18 °C and sunny.")
    first = oai.chat.completions.create(model="agent-server", messages=QUESTION, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *QUESTION,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18, "sky": "sunny"}'},
    ]
    second = oai.chat.completions.create(model="agent-server", messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "18 °C and sunny."
    assert backend.prompts[1].endswith(
        'It is [get_weather({"city": "Paris"}) → {"temp_c": 18, "sky": "sunny"}]'
    )


def test_a_streamed_call_sends_id_and_name_first_then_the_arguments(oai, backend):
    backend.queue(CALLING)
    chunks = list(
        oai.chat.completions.create(
            model="agent-server", messages=QUESTION, tools=[WEATHER], stream=True
        )
    )
    pieces = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert len(pieces) == 2
    head, body = pieces[0][0], pieces[1][0]
    assert head.id.startswith("call_") and head.type == "function"
    assert head.function.name == "get_weather" and head.function.arguments == ""
    assert body.id is None and json.loads(body.function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == "It is"


@pytest.mark.parametrize(
    ("tool_choice", "written", "opened"),
    [
        ("required", 'get_weather({"city": "Oslo"})', "["),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            '{"city": "Oslo"})',
            "[get_weather(",
        ),
    ],
)
def test_a_required_or_named_function_is_called(oai, backend, tool_choice, written, opened):
    backend.queue(written)
    reply = oai.chat.completions.create(
        model="agent-server", messages=QUESTION, tools=[WEATHER], tool_choice=tool_choice
    )
    assert backend.prompts[0].endswith(opened)  # the call is opened for the model
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Oslo"
    }


def test_tool_choice_none_and_the_service_s_own_tools_inline_beside_the_client_s(oai, backend):
    backend.queue("No call.", ['Echo: [Echo("olleh")', ' then [get_weather({"city": "Rome"})'])
    plain = oai.chat.completions.create(
        model="agent-server", messages=QUESTION, tools=[WEATHER], tool_choice="none"
    )
    assert plain.choices[0].message.tool_calls is None
    assert "get_weather" not in backend.prompts[0]
    both = oai.chat.completions.create(model="agent-server", messages=QUESTION, tools=[WEATHER])
    trace = both.model_extra["agent"]["trace"]
    assert [(t["tool"], t["result"]) for t in trace] == [("Echo", "hello")]  # ran here, inline
    assert both.choices[0].message.tool_calls[0].function.name == "get_weather"
