"""OpenAI's function calling and structured output, as the chat and Responses routes read and
write them: the request's `tools` and `tool_choice`, the `assistant` messages with `tool_calls`
and the `tool` messages that answer them (read back as the answer so far, each call spliced
with its result, the way the engine splices its own tools), the `tool_calls` of a response or a
chunk, and `response_format` (the JSON the answer must be).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_server.answering import Function, ToolChoice
from agent_server.core import structured
from agent_server.core.events import ClientCall
from agent_server.errors import InvalidRequest

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


class FunctionTool(BaseModel):
    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class CalledFunction(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str = Field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")
    type: Literal["function"] = "function"
    function: CalledFunction

    @classmethod
    def from_call(cls, call: ClientCall) -> ToolCall:
        return cls(function=CalledFunction(name=call.name, arguments=call.arguments))


class ToolCallDelta(BaseModel):
    """One piece of a streamed call: its id, type and name first, then its arguments."""

    index: int = 0
    id: str | None = Field(default=None, exclude_if=lambda v: v is None)
    type: Literal["function"] | None = Field(default=None, exclude_if=lambda v: v is None)
    function: dict[str, str]


def functions(tools: Sequence[FunctionTool] | None) -> list[Function]:
    """The client's functions, each named once, their parameters a JSON Schema object."""
    found: list[Function] = []
    for i, tool in enumerate(tools or ()):
        spec = tool.function
        if any(f.name == spec.name for f in found):
            raise InvalidRequest(f"two tools are named {spec.name!r}", f"tools[{i}].function.name")
        where = f"tools[{i}].function.parameters"
        check_schema(spec.parameters, where)
        if spec.parameters.get("type", "object") != "object":
            raise InvalidRequest(f"{where}: the arguments must be an object", where)
        if problem := structured.schema_problem({"type": "object", **spec.parameters}):
            raise InvalidRequest(f"{where}: cannot be decoded to: {problem}", where)
        found.append(Function(spec.name, spec.description, spec.parameters))
    return found


def check_schema(schema: dict[str, Any], where: str) -> None:
    """`InvalidRequest` naming `where` unless `schema` is a JSON Schema (draft 2020-12)."""
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{where}: not a JSON Schema: {exc.message}", where) from None


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(default="response", pattern=NAME_PATTERN)
    description: str = ""
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: `text`, `json_object`, or `json_schema` with its schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


def answer_format(
    kind: str, schema: JsonSchemaFormat | None, where: str
) -> structured.AnswerFormat | None:
    """The JSON an answer must be, for a format `kind` (`where`: the request field it came
    from); None for text. `InvalidRequest` for a schema that cannot be honoured."""
    if kind == "text":
        return None
    if kind == "json_object":
        return structured.JSON_OBJECT
    if schema is None:
        raise InvalidRequest(f"{where}: type json_schema needs its json_schema", where)
    field = f"{where}.schema"
    check_schema(schema.schema_, field)
    if problem := structured.answer_problem(schema.schema_):
        raise InvalidRequest(f"{field}: {problem}", field)
    return structured.AnswerFormat(schema.schema_, schema.name)


def choice(value: str | NamedToolChoice | None) -> tuple[ToolChoice, str | None]:
    """`tool_choice` as (auto | none | required, the named function)."""
    if value is None:
        return "auto", None
    if isinstance(value, NamedToolChoice):
        return "auto", value.function.name
    if value not in ("auto", "none", "required"):
        raise InvalidRequest(
            f"tool_choice {value!r}: use auto, none, required or a function", "tool_choice"
        )
    return value, None  # type: ignore[return-value]  # checked just above


def continuation(messages: Sequence[Any], start: int) -> str:
    """The answer so far from `messages[start:]`: each assistant message's text and its calls,
    each call spliced with the result its `tool` message sent back."""
    text = ""
    pending: dict[str, tuple[str, str]] = {}  # id → (name, arguments) still without a result
    for i, message in enumerate(messages[start:], start):
        extra = message.model_extra or {}
        if message.role == "assistant":
            if pending:
                raise InvalidRequest(
                    f"messages[{i}]: the calls {sorted(pending)} have no tool message yet",
                    f"messages[{i}]",
                )
            text += message.content if isinstance(message.content, str) else ""
            for j, call in enumerate(extra.get("tool_calls") or ()):
                try:
                    function = call["function"]
                    pending[call["id"]] = (function["name"], function.get("arguments", "{}"))
                except (KeyError, TypeError):
                    where = f"messages[{i}].tool_calls[{j}]"
                    raise InvalidRequest(
                        f"{where}: needs an id and a function name", where
                    ) from None
        elif message.role == "tool":
            call_id = extra.get("tool_call_id")
            if call_id not in pending:
                raise InvalidRequest(
                    f"messages[{i}]: tool_call_id {call_id!r} answers no call of the assistant "
                    "before it",
                    f"messages[{i}].tool_call_id",
                )
            name, arguments = pending.pop(call_id)
            result = message.content if isinstance(message.content, str) else ""
            if text and not text[-1].isspace():
                text += " "  # the reader's answer dropped the space the call was written after
            text += f"[{name}({arguments}) → {' '.join(result.split())}]"
        else:
            raise InvalidRequest(
                f"messages[{i}]: after the question come the assistant's calls and their tool "
                f"results, not a {message.role!r} message",
                f"messages[{i}].role",
            )
    if pending:
        raise InvalidRequest(f"the calls {sorted(pending)} have no tool message", "messages")
    return text
