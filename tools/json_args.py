"""A tool's arguments as a JSON object under a JSON Schema (MCP servers' tools, a client's
functions): how the prompt describes them, an example call, and reading what the model wrote."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tools.base import ToolError

_EXAMPLE = re.compile(r"e\.g\.,?\s*['\"]([^'\"]+)['\"]")


def describe_fields(schema: Mapping[str, Any]) -> str:
    """`city: string, days?: integer`: each property, `?` when it is optional."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    return ", ".join(
        f"{key}{'' if key in required else '?'}: {spec.get('type', 'any')}"
        for key, spec in properties.items()
    )


def example_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An argument object for the prompt's example: each required property with a value of its
    type (a string's from its description's "e.g." when it has one)."""
    properties = schema.get("properties") or {}
    example: dict[str, Any] = {}
    for key in schema.get("required") or list(properties)[:1]:
        spec = properties.get(key) or {}
        kind = spec.get("type", "string")
        if spec.get("examples"):
            example[key] = spec["examples"][0]
        elif "default" in spec:
            example[key] = spec["default"]
        elif spec.get("enum"):
            example[key] = spec["enum"][0]
        elif kind == "string":
            found = _EXAMPLE.search(str(spec.get("description", "")))
            example[key] = found.group(1) if found else key
        else:
            example[key] = {"integer": 1, "number": 1.5, "boolean": True, "array": []}.get(kind, {})
    return example


def parse_arguments(argument: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The call's argument as the tool's JSON object, checked against its schema; `ToolError`
    saying what is wrong. A tool with one string property also takes the bare text."""
    import jsonschema

    text = argument.strip()
    example = json.dumps(example_arguments(schema), ensure_ascii=False)
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        properties = list((schema.get("properties") or {}).items())
        if len(properties) == 1 and properties[0][1].get("type", "string") == "string":
            value = {properties[0][0]: text}
        else:
            raise ToolError(f"the arguments must be a JSON object, e.g. {example}") from None
    if not isinstance(value, dict):
        raise ToolError(f"the arguments must be a JSON object, e.g. {example}")
    try:
        jsonschema.validate(value, dict(schema))
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "arguments"
        raise ToolError(f"{where}: {exc.message}") from None
    except jsonschema.SchemaError:
        pass  # the schema is its author's business: the tool's answer will say what is wrong
    return value
