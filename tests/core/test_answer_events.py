"""The reader's answer as the engine streams it: for any mix of text, calls, their results and
malformed calls, the `AnswerEvent`s add up to the final answer, and none holds call syntax."""

from __future__ import annotations

import asyncio

from doubles import EchoTool, PrintingPython
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.events import AnswerEvent, FinalEvent
from agent_server.core.prompts import Prompt

words = st.sampled_from(["It is", " 5", ".", " so", "\n", " (a)", " [1]", " $3", "\n\n", " x"])
inline_call = st.sampled_from(['[Echo("ab")', "[Echo(12)", "[Nope(1)", "[Echo(1 → 2]"])
program = st.sampled_from(["\n```python\nprint(7)\n```", "\n```python\nx\n```", "```js\nx\n```"])


def replies(opener: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """A reply in parts: each part after the first is what the model writes after a splice."""
    text = st.lists(words, max_size=4).map("".join)
    part = st.tuples(text, st.one_of(st.just(""), opener)).map("".join)
    return st.lists(part, min_size=1, max_size=4)


def answer_events(reply: list[str], strategy: str) -> tuple[str, FinalEvent]:
    backend = ScriptedBackend([reply])
    engine = Engine(backend, {"Echo": EchoTool(), "Python": PrintingPython()}, Prompt("chat"))

    async def go() -> tuple[str, FinalEvent]:
        said, final = [], None
        async for event in engine.stream("q?", strategy=strategy):
            if isinstance(event, AnswerEvent):
                said.append(event.text)
            elif isinstance(event, FinalEvent):
                final = event
        assert final is not None
        return "".join(said), final

    try:
        return asyncio.run(go())
    finally:
        engine.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=replies(inline_call))
def test_inline_calls_answer_deltas_add_up_to_the_final_answer(reply: list[str]) -> None:
    said, final = answer_events(reply, "toolformer")
    assert said == final.answer
    assert "[Echo(" not in said and "→" not in said


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=replies(program))
def test_fenced_programs_answer_deltas_add_up_to_the_final_answer(reply: list[str]) -> None:
    said, final = answer_events(reply, "tir")
    assert said == final.answer
    assert "```python" not in said and "```output" not in said
