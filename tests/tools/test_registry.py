"""Every registered tool, through `invoke` (the engine's path): the same limits and error shape.

Real tools throughout: Search on the local backend over the SQuAD passages, Retrieve over the
household documents with the real embedder, the real calculator worker and Python sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.base import MAX_RESULT_CHARS, Tool, invoke
from tools.registry import (
    TOOL_NAMES,
    ToolOptions,
    build_registry,
    close_registry,
    default_tools,
    prepare_tools,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = ToolOptions(
    search_backend="local",
    search_corpus=ROOT / "data" / "squad_passages.jsonl",
    documents=ROOT / "tests" / "data" / "documents",
)
WORKING = {
    "Calculator": ("400/1400", "0.2857"),
    "Python": ("print(6 * 7)", "42"),
    "Search": ('"largest city in Poland"', "Warsaw"),
    "Retrieve": ('"boiler service"', "Northside Heating"),
}


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Tool]]:
    options = ToolOptions(**{**OPTIONS.__dict__, "index_dir": tmp_path_factory.mktemp("index")})
    built = build_registry(None, options)
    prepare_tools(built)
    yield built
    close_registry(built)


def call(tool: Tool, argument: str, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    return asyncio.run(invoke(tool, argument, timeout_s))


def test_defaults_include_retrieve_only_with_documents() -> None:
    assert default_tools(ToolOptions()) == ["Calculator", "Python", "Search"]
    assert default_tools(OPTIONS) == list(TOOL_NAMES)


def test_a_setting_a_tool_needs_is_named_when_missing() -> None:
    with pytest.raises(ValueError, match="AGENT_SEARCH_CORPUS"):
        build_registry(["Search"], ToolOptions(search_backend="local"))
    with pytest.raises(ValueError, match="AGENT_DOCUMENTS"):
        build_registry(["Retrieve"], ToolOptions())


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_each_tool_answers_its_typical_call(tools: dict[str, Tool], name: str) -> None:
    argument, expected = WORKING[name]
    outcome = call(tools[name], argument)
    assert outcome.error is None and outcome.result is not None
    assert expected in outcome.result


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_a_bad_argument_is_a_one_line_error(tools: dict[str, Tool], name: str) -> None:
    outcome = call(tools[name], "   ")
    assert outcome.result is None
    assert outcome.error and "\n" not in outcome.error and len(outcome.error) < 200


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_the_time_limit_holds_and_the_tool_still_works_after(
    tools: dict[str, Tool], name: str
) -> None:
    argument, expected = WORKING[name]
    if name == "Search":
        argument = '"capital of Poland"'  # not cached by the test above, so it really waits
    late = call(tools[name], argument, timeout_s=1e-6)
    assert late.result is None and late.error == f"{name} timed out after 1e-06 s"
    again = call(tools[name], WORKING[name][0])
    assert again.result is not None and expected in again.result


def test_long_output_is_capped(tools: dict[str, Tool]) -> None:
    outcome = call(tools["Python"], "print('x' * 100_000)")
    assert outcome.result is not None
    assert len(outcome.result) <= MAX_RESULT_CHARS and "cut" in outcome.result
