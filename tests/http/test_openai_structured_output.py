"""`response_format` on `/v1/chat/completions` and `text.format` on `/v1/responses`, with OpenAI's
own Python client over real HTTP on loopback. The model is scripted and made to write prose or a
wrong value where JSON is due: the answer must parse and validate anyway, because the JSON is
constrained while it is decoded (`core.structured`)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel, ConfigDict

CITY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "population_millions": {"type": "number"},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "population_millions", "capital"],
    "additionalProperties": False,
}
# What a scripted model that has lost its script writes in a JSON value is the grammar's first
# token each time, which for a number or an open string can go on for ever: the schema that
# holds a prose-writing model bounds its strings and has no numbers.
BOUNDED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "size": {"enum": ["small", "large"]},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "size", "capital"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Tell me about Paris."}]


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str
    capital: bool


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}


def test_json_schema_holds_a_model_that_writes_prose_to_the_schema(oai, backend):
    backend.queue("Paris is the capital of France, a large city.")
    reply = oai.chat.completions.create(
        model="agent-server", messages=ASK, response_format=schema_format(BOUNDED)
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), BOUNDED)
    assert reply.choices[0].finish_reason == "stop"
    assert '"capital"' in backend.prompts[0]  # the model is told the schema


def test_json_the_model_writes_well_comes_back_as_written(oai, backend):
    written = '{"city": "Paris", "population_millions": 2.1, "capital": true}'
    backend.queue(written)
    reply = oai.chat.completions.create(
        model="agent-server", messages=ASK, response_format=schema_format(CITY)
    )
    assert reply.choices[0].message.content == written


def test_the_client_s_parse_helper_gets_its_pydantic_model(oai, backend):
    backend.queue('{"city": "Paris", "capital": "yes"}')  # "yes" is not a boolean
    parsed = oai.chat.completions.parse(model="agent-server", messages=ASK, response_format=City)
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City) and city.city == "Paris"


def test_json_object_streams_an_object(oai, backend):
    backend.queue('{"city": "Paris", "sights": ["Louvre", "Orsay"]}')
    chunks = oai.chat.completions.create(
        model="agent-server",
        messages=ASK,
        response_format={"type": "json_object"},
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"city": "Paris", "sights": ["Louvre", "Orsay"]}


def test_a_json_answer_may_call_a_client_function_first(oai, backend):
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    backend.queue('[get_weather({"city": "Paris"})]')
    reply = oai.chat.completions.create(
        model="agent-server",
        messages=ASK,
        tools=[weather],
        response_format=schema_format(CITY),
    )
    (call,) = reply.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("response_format", "problem", "param"),
    [
        ({"type": "json_schema"}, "needs its json_schema", "response_format.json_schema"),
        (
            schema_format({"type": "array", "items": {"type": "string"}}),
            "root of the schema must be",
            "response_format.json_schema.schema",
        ),
        (
            schema_format({"type": "object", "properties": {"a": {"type": 7}}}),
            "not a JSON Schema",
            "response_format.json_schema.schema",
        ),
        (
            schema_format({"type": "object", "properties": {"d": {"format": "color"}}}),
            "format",
            "response_format.json_schema.schema",
        ),
        ({"type": "yaml"}, "json_schema", "response_format.type"),
    ],
)
def test_a_format_that_cannot_be_honoured_is_a_400_naming_the_field(
    oai, response_format, problem, param
):
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(
            model="agent-server", messages=ASK, response_format=response_format
        )
    assert problem in refused.value.message
    assert refused.value.param == param


def test_responses_text_format_json_schema(oai, backend):
    backend.queue("It is Paris.")
    response = oai.responses.create(
        model="agent-server",
        input="Tell me about Paris.",
        text={"format": {"type": "json_schema", "name": "city", "schema": BOUNDED}},
    )
    jsonschema.validate(json.loads(response.output_text), BOUNDED)
    assert response.text.format.type == "json_schema"
