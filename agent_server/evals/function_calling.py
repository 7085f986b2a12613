"""Function calling and structured output on a real model: ten requests of the kind agent
frameworks send, each offering the same three functions (weather, unit conversion, a stock
price), and ten `response_format` requests, each with its own JSON Schema. `score` answers them
all and says which came out right; `benchmarks/function_calling.py` prints it, and
tests/test_function_calling_model.py holds the model to it (8 of 10 right functions with valid
arguments; 10 of 10 valid JSON answers).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jsonschema

from agent_server import answering
from agent_server.answering import AnswerRequest, Function
from agent_server.core.engine import Engine, final_event
from agent_server.core.structured import AnswerFormat

WEATHER = Function(
    "get_weather",
    "The current weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "e.g. 'Paris'"}},
        "required": ["city"],
    },
)
CONVERT = Function(
    "convert_units",
    "Convert a quantity between units.",
    {
        "type": "object",
        "properties": {
            "value": {"type": "number"},
            "from_unit": {"type": "string", "description": "e.g. 'mile'"},
            "to_unit": {"type": "string", "description": "e.g. 'km'"},
        },
        "required": ["value", "from_unit", "to_unit"],
    },
)
STOCK = Function(
    "lookup_stock",
    "The latest price of a stock by its ticker symbol.",
    {
        "type": "object",
        "properties": {"ticker": {"type": "string", "description": "e.g. 'AAPL'"}},
        "required": ["ticker"],
    },
)
FUNCTIONS = {f.name: f for f in (WEATHER, CONVERT, STOCK)}
ASKED = [
    ("What's the weather like in Berlin right now?", "get_weather"),
    ("Is it raining in Tokyo at the moment?", "get_weather"),
    ("How warm is it in Cairo today?", "get_weather"),
    ("Convert 26.2 miles to kilometers.", "convert_units"),
    ("How many pounds is 70 kg?", "convert_units"),
    ("What is 100 degrees Fahrenheit in Celsius?", "convert_units"),
    ("What is Apple's stock price?", "lookup_stock"),
    ("How much does one share of Microsoft (MSFT) cost now?", "lookup_stock"),
    ("Look up the current price of Tesla stock.", "lookup_stock"),
    ("What's the weather in Reykjavik?", "get_weather"),
]


# Ten requests for structured output, each with its own schema (strings, numbers, enums,
# booleans, arrays, nested objects): what a client's `response_format` asks. The answer must
# parse and validate every time: the JSON is decoded to the schema, not hoped for.
def _object(properties: dict[str, object]) -> dict[str, object]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


TEXT = {"type": "string", "maxLength": 80}
NUMBER = {"type": "number"}
FORMATS = [
    ("Describe Paris in a few words.", _object({"city": TEXT, "country": TEXT})),
    ("How many legs does a spider have?", _object({"animal": TEXT, "legs": {"type": "integer"}})),
    ("Is the Pacific the largest ocean?", _object({"answer": {"type": "boolean"}, "why": TEXT})),
    (
        "Classify the sentiment of: 'I loved this film!'",
        _object({"sentiment": {"enum": ["positive", "negative", "neutral"]}}),
    ),
    (
        "List three primary colours.",
        _object({"colours": {"type": "array", "items": TEXT, "maxItems": 5}}),
    ),
    ("What is 12 times 12?", _object({"expression": TEXT, "result": NUMBER})),
    (
        "Give a book title and its author for a classic novel.",
        _object({"book": _object({"title": TEXT, "author": TEXT}), "year": {"type": "integer"}}),
    ),
    (
        "Extract the name and age: 'Maria is 34 and lives in Lisbon.'",
        _object({"name": TEXT, "age": {"type": "integer"}, "city": TEXT}),
    ),
    ("Convert 5 km to miles.", _object({"km": NUMBER, "miles": NUMBER})),
    (
        "Suggest a name for a cat and say if it is short.",
        _object({"name": TEXT, "short": {"type": "boolean"}}),
    ),
]


@dataclass(frozen=True)
class Outcome:
    question: str
    written: str  # the call (`name(arguments)`) or the JSON answer
    right: bool
    seconds: float


async def function_calls(engine: Engine, tools: list[str] | None = None) -> list[Outcome]:
    """Each of `ASKED` with the three functions offered (`tools`: the service's own tools
    offered beside them; [] none): right when the expected function is called with arguments
    its schema accepts."""
    outcomes = []
    for question, expected in ASKED:
        started = time.perf_counter()
        asked = AnswerRequest(question, tools=tools, functions=list(FUNCTIONS.values()))
        final = await final_event(answering.answer(asked, engine, None))
        call = final.client_call
        right = call is not None and call.name == expected
        if call is not None and right:
            right = _valid(call.arguments, dict(FUNCTIONS[expected].parameters))
        written = f"{call.name}({call.arguments})" if call else f"(no call) {final.answer}"
        outcomes.append(Outcome(question, written, right, time.perf_counter() - started))
    return outcomes


async def json_answers(engine: Engine) -> list[Outcome]:
    """Each of `FORMATS` asked with its schema as the answer's format: right when the answer
    parses and validates."""
    outcomes = []
    for question, schema in FORMATS:
        started = time.perf_counter()
        asked = AnswerRequest(question, answer_format=AnswerFormat(schema))
        final = await final_event(answering.answer(asked, engine, None))
        right = _valid(final.answer, schema)
        outcomes.append(Outcome(question, final.answer, right, time.perf_counter() - started))
    return outcomes


def _valid(text: str, schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True
