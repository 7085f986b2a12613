"""Structured decoding on the scripted backend: a model that writes what its script says is held
to the JSON Schema wherever one applies (a JSON answer, a call's arguments), and left alone
everywhere else. The scripted model gives every token but its script's next one zero
probability, so where the script breaks the grammar the grammar's first token wins: each
test's script is made to break it, and the answer must still validate."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
from doubles import EchoTool

from agent_server.answering import ClientFunction, Function
from agent_server.core.structured import JSON_OBJECT, AnswerFormat, answer_problem, schema_problem
from tools.base import NoWarmUp

# No other properties: with them allowed, the grammar's first token after a value is `,`, and a
# scripted model that has lost its script writes keys forever.
FLAG = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
UNITS = {
    "type": "object",
    "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["unit"],
    "additionalProperties": False,
}


class JsonTool(NoWarmUp):
    """A service tool whose argument is a JSON object (as an MCP server's tools are)."""

    name = "Convert"
    description = "Converts a temperature."
    example = '{"unit": "celsius"}'
    parameters = UNITS

    async def __call__(self, argument: str) -> str:
        return "unit " + json.loads(argument)["unit"]


def run(engine, question="q", **kwargs):
    async def go():
        final = None
        async for event in engine.stream(question, **kwargs):
            final = event
        return final

    return asyncio.run(go())


def test_a_json_answer_follows_the_schema_when_the_model_writes_prose(make_engine):
    engine, backend = make_engine("Yes, it is fine.")
    final = run(engine, answer_format=AnswerFormat(FLAG))
    jsonschema.validate(json.loads(final.answer), FLAG)
    assert final.stop_reason == "eos"
    assert "JSON Schema" in backend.prompts[0] and '"ok"' in backend.prompts[0]


def test_a_json_answer_the_model_writes_well_is_kept_as_written(make_engine):
    engine, _ = make_engine('{"ok": true}')
    final = run(engine, answer_format=AnswerFormat(FLAG))
    assert final.answer == '{"ok": true}'


def test_json_object_takes_any_object_and_leaves_out_the_service_s_tools(make_engine):
    engine, backend = make_engine('{"a": [1, 2], "b": "[Echo(x)]"}')
    final = run(engine, answer_format=JSON_OBJECT)
    assert json.loads(final.answer) == {"a": [1, 2], "b": "[Echo(x)]"}
    assert final.trace == ()  # the call syntax in a JSON string is text
    assert "Echo" not in backend.prompts[0]


def test_a_client_function_s_arguments_follow_its_schema(make_engine):
    engine, _ = make_engine("[convert(unit=kelvin)]")
    function = ClientFunction(Function("convert", "Converts.", UNITS))
    final = run(engine, functions=[function])
    assert final.stop_reason == "tool_calls"
    assert final.client_call is not None and final.client_call.name == "convert"
    jsonschema.validate(json.loads(final.client_call.arguments), UNITS)


def test_arguments_written_well_are_kept_and_a_named_function_is_constrained_too(make_engine):
    engine, _ = make_engine('{"unit": "fahrenheit"})')
    function = ClientFunction(Function("convert", "Converts.", UNITS))
    final = run(engine, functions=[function], prefill="[convert(", tools=[])
    assert final.client_call is not None
    assert final.client_call.arguments == '{"unit": "fahrenheit"}'


def test_a_service_tool_with_a_schema_runs_with_valid_arguments(make_engine):
    engine, _ = make_engine(["It is [Convert(kelvin)", " done."], tools=[JsonTool(), EchoTool()])
    final = run(engine)
    assert [(r.tool, r.error) for r in final.trace] == [("Convert", None)]
    jsonschema.validate(json.loads(final.trace[0].argument), UNITS)
    assert '[Convert({"unit": "celsius"}) → unit celsius]' in final.text


def test_free_text_tools_are_not_constrained(make_engine):
    engine, _ = make_engine(['[Echo("a b")', " ok"])
    final = run(engine)
    assert final.trace[0].argument == "a b" and final.trace[0].result == "b a"


def test_a_json_answer_may_instead_call_a_client_function(make_engine):
    engine, _ = make_engine('[convert({"unit": "celsius"})]')
    function = ClientFunction(Function("convert", "Converts.", UNITS))
    final = run(engine, functions=[function], answer_format=AnswerFormat(FLAG))
    assert final.client_call is not None
    assert json.loads(final.client_call.arguments) == {"unit": "celsius"}


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "string", "format": "no-such-format"}, "format"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "missing"),
    ],
)
def test_a_schema_that_cannot_be_decoded_to_is_named(schema, problem):
    found = schema_problem(schema)
    assert found is not None and problem in found


def test_a_json_answer_s_root_must_be_an_object():
    assert answer_problem({"type": "array"}) is not None
    assert answer_problem(FLAG) is None
