"""The reader's answer streamed on both routes adds up to the final answer, for any mix of text,
calls, results, errors and malformed calls: a property test over real HTTP on loopback.

The model is the scripted backend: each generated reply is a list of parts, every part but the
last ending where a call closes (the engine then splices the result and the next part follows).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from doubles import EchoTool, RefusingTool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings

TEXT = st.sampled_from(
    [
        "a", " b", "It is", " ", "  ", "\n", ".", ",", "[1]", "[x](y)", "[Calculator]", "]", "→",
        "(", ")", "Echo", " [Echo x]", " [ ", "\n  ", "10", " 2.5",
    ]
)  # fmt: skip
CALLS = st.sampled_from(
    ['[Echo("ab")', '[Echo("")', "[Echo(12)", ' [Refuse("x")', '[Nope("q")', '[Echo("a b")']
)
PART = st.tuples(st.lists(TEXT, max_size=4).map("".join), CALLS).map("".join)
LAST = st.one_of(
    st.lists(TEXT, max_size=5).map("".join),
    st.just('[Echo("never closed'),  # the answer ends inside a call
    st.just("[Echo"),
)
REPLIES = st.tuples(st.lists(PART, max_size=3), LAST).map(lambda r: [*r[0], r[1]])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ScriptedBackend, httpx.Client, openai.OpenAI]]:
    backend = ScriptedBackend()
    tools = {"Echo": EchoTool(), "Refuse": RefusingTool()}
    engine = Engine(backend, tools, Prompt("chat"))
    app = create_app(Settings(tools=[]), lambda _: engine)
    for client in serve(app):
        wait_ready(client)
        base_url = f"{str(client.base_url).rstrip('/')}/v1"
        with openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10) as oai:
            yield backend, client, oai


def _native(client: httpx.Client) -> tuple[str, dict[str, Any]]:
    response = client.post("/v1/ask", json={"question": "q", "stream": True})
    said, final = "", {}
    for block in response.text.split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.splitlines())
            data = json.loads(fields["data"])
            if fields["event"] == "answer":
                said += data["text"]
            elif fields["event"] == "final":
                final = data
    return said, final


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reply=REPLIES)
def test_the_streamed_answer_adds_up_to_the_final_answer_on_both_routes(served, reply):
    backend, client, oai = served
    backend.queue(reply, reply, reply)
    said, final = _native(client)
    assert said == final["answer"]
    assert "[Echo(" not in said  # no call syntax reaches the reader
    chunks = list(
        oai.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "q"}], stream=True
        )
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = oai.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "q"}]
    )
    assert content == whole.choices[0].message.content == final["answer"]
