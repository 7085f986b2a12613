"""The OpenAI-compatible API over real HTTP on loopback, driven by OpenAI's own Python client.

The model is the scripted backend (replies queued per test); the one tool is the Echo double.
`AnswerStream` is also checked on its own against `strip_calls`, on generated texts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import openai
import pytest
from doubles import EchoTool
from hypothesis import given
from hypothesis import strategies as st
from serving import serve, wait_idle, wait_ready

from agent_server.backends.base import Logits
from agent_server.backends.scripted import ScriptedBackend, ScriptedSession
from agent_server.core.answer import AnswerStream
from agent_server.core.engine import Engine
from agent_server.core.grammar import strip_calls
from agent_server.core.prompts import Prompt
from agent_server.errors import ModelBusy
from agent_server.http.app import create_app
from agent_server.settings import Settings

CALL_REPLY = ['It is [Echo("olleh")', " hello."]


class _Session(ScriptedSession):
    def __init__(self, backend: _Backend, parts: list[str]) -> None:
        super().__init__(backend, parts)
        self._owner = backend

    def feed(self, token_ids: Sequence[int]) -> Logits:
        if self._owner.fail_after is not None and len(self.feeds) >= self._owner.fail_after:
            raise RuntimeError("the model broke")
        time.sleep(self._owner.step_s)
        return super().feed(token_ids)


class _Backend(ScriptedBackend):
    """The scripted model, optionally slow (`step_s` a feed) or failing after some feeds."""

    def __init__(self, step_s: float = 0.0, fail_after: int | None = None) -> None:
        super().__init__()
        self.step_s = step_s
        self.fail_after = fail_after

    def new_session(self) -> ScriptedSession:
        session = _Session(self, self.replies.popleft() if self.replies else [""])
        self.sessions.append(session)
        return session


def _serve(
    backend: ScriptedBackend, settings: Settings | None = None
) -> Iterator[tuple[httpx.Client, openai.OpenAI]]:
    engine = Engine(backend, {"Echo": EchoTool()}, Prompt("chat"))
    app = create_app(settings or Settings(), lambda _: engine)
    for client in serve(app):
        wait_ready(client)
        base_url = f"{str(client.base_url).rstrip('/')}/v1"
        with openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10) as oai:
            yield client, oai


@pytest.fixture
def backend() -> _Backend:
    return _Backend()


@pytest.fixture
def served(backend: _Backend) -> Iterator[tuple[httpx.Client, openai.OpenAI]]:
    yield from _serve(backend)


@pytest.fixture
def oai(served: tuple[httpx.Client, openai.OpenAI]) -> openai.OpenAI:
    return served[1]


@pytest.fixture
def http(served: tuple[httpx.Client, openai.OpenAI]) -> httpx.Client:
    return served[0]


def _ask(question: str = "Say hello") -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}]


def _stream(oai: openai.OpenAI, **kwargs: Any) -> tuple[str, list[Any]]:
    chunks = list(oai.chat.completions.create(model="scripted", stream=True, **kwargs))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return content, chunks


def test_models_list_and_retrieve(oai, http):
    models = oai.models.list()
    assert [m.id for m in models.data] == ["scripted"]
    assert models.data[0].owned_by == "agent-server" and models.data[0].object == "model"
    raw = http.get("/v1/models").json()
    assert raw["object"] == "list" and isinstance(raw["data"][0]["created"], int)
    assert oai.models.retrieve("agent-server").id == "scripted"
    with pytest.raises(openai.NotFoundError) as missing:
        oai.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"


def test_completion_has_answer_usage_and_agent_extra(oai, backend):
    backend.queue(CALL_REPLY)
    messages = [{"role": "system", "content": "You are a pirate."}, *_ask()]
    completion = oai.chat.completions.create(model="scripted", messages=messages)
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "scripted"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "It is hello."
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == len('It is [Echo("olleh") hello.')
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
    agent = completion.model_extra["agent"]
    assert agent["text"] == 'It is [Echo("olleh") → hello] hello.'
    assert agent["trace"][0] | {"duration_s": 0} == {
        "tool": "Echo",
        "argument": "olleh",
        "result": "hello",
        "error": None,
        "duration_s": 0,
    }
    assert agent["stop_reason"] == "eos" and agent["spliced_tokens"] == len(" → hello]")
    assert set(agent["timings"]) == {"prefill_s", "decode_s", "tools_s", "total_s"}
    assert "pirate" not in backend.prompts[-1]  # the service's own prompt defines the tools


def test_alias_and_missing_model_name_are_served(oai, http, backend):
    backend.queue("One.", "Two.")
    completion = oai.chat.completions.create(model="agent-server", messages=_ask())
    assert completion.choices[0].message.content == "One." and completion.model == "scripted"
    plain = http.post("/v1/chat/completions", json={"messages": _ask(), "colour": "red"})
    assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"] == "Two."
    with pytest.raises(openai.NotFoundError) as unknown:
        oai.chat.completions.create(model="gpt-4o", messages=_ask())
    assert unknown.value.code == "model_not_found" and "'scripted'" in unknown.value.message


@pytest.mark.parametrize(
    "reply",
    [
        CALL_REPLY,
        "A plain answer, no calls.",
        ['[Echo("ab")', " ba is it."],
        ['The word is [Echo("dlrow")', "."],
        ['Two: [Echo("a")', ' and [Echo("b")', " done."],
        "See [1] and [x](y), or [Calculator] alone.",
        ['Line one.\n[Echo("x")', "\n  indented"],
    ],
)
def test_streamed_content_equals_message_content(oai, backend, reply):
    backend.queue(reply, reply)
    whole = oai.chat.completions.create(model="scripted", messages=_ask())
    content, chunks = _stream(oai, messages=_ask(), stream_options={"include_usage": True})
    assert content == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    last, usage = chunks[-2], chunks[-1]
    assert last.choices[0].finish_reason == "stop" and not last.choices[0].delta.content
    assert _untimed(last.model_extra["agent"]) == _untimed(whole.model_extra["agent"])
    assert usage.choices == [] and usage.usage == whole.usage
    assert len({c.id for c in chunks}) == 1


def _untimed(agent: dict[str, Any]) -> dict[str, Any]:
    trace = [item | {"duration_s": 0} for item in agent["trace"]]
    return agent | {"timings": {}, "trace": trace}


def test_stream_reports_calls_and_results_as_agent_extras(oai, backend):
    backend.queue(CALL_REPLY)
    content, chunks = _stream(oai, messages=_ask())
    agent = [c.model_extra["agent"] for c in chunks if c.model_extra.get("agent")]
    assert agent[0] == {"call": {"index": 0, "tool": "Echo", "argument": "olleh"}}
    assert agent[1]["result"] | {"duration_s": 0} == {
        "index": 0,
        "tool": "Echo",
        "argument": "olleh",
        "result": "hello",
        "error": None,
        "duration_s": 0,
    }
    assert "trace" in agent[2]
    for chunk in chunks:
        if chunk.model_extra.get("agent", {}).keys() & {"call", "result"}:
            assert chunk.choices[0].delta.content is None
    assert content == "It is hello." and not any(
        "[" in (c.choices[0].delta.content or "") for c in chunks
    )


def test_raw_sse_lines(http, backend):
    backend.queue(CALL_REPLY)
    body = {"model": "scripted", "messages": _ask(), "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    call = next(c for c in chunks if "call" in c.get("agent", {}))
    assert call["choices"][0] == {"index": 0, "delta": {}, "finish_reason": None, "logprobs": None}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[-1]  # only asked for with stream_options.include_usage


def test_multi_part_content_and_history_reach_the_prompt(oai, backend):
    backend.queue("4.")
    messages = [
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "2+2?"}],
        },
    ]
    completion = oai.chat.completions.create(model="scripted", messages=messages)
    assert completion.choices[0].message.content == "4."
    prompt = backend.prompts[-1]
    assert "What is the capital of France?" in prompt and "Paris." in prompt
    assert prompt.index("Paris.") < prompt.index("Question: What is 2+2?")
    assert "ignored" not in prompt


@pytest.mark.parametrize(
    ("kwargs", "problem", "param"),
    [
        ({"n": 2}, "n=2", "n"),
        ({"messages": []}, "messages must not be empty", "messages"),
        (
            {"messages": [*_ask(), {"role": "assistant", "content": "Hi"}]},
            "the last message must be from the user (got 'assistant')",
            "messages[1].role",
        ),
        (
            {"messages": [*_ask(), {"role": "tool", "tool_call_id": "call_9", "content": "4"}]},
            "tool_call_id 'call_9' answers no call",
            "messages[1].tool_call_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}],
                    }
                ]
            },
            "type 'image_url' is not supported",
            "messages[0].content[0].type",
        ),
        ({"messages": _ask("   ")}, "the last user message is empty", "messages"),
        ({"messages": _ask("x" * 8001)}, "at most 8000 characters", "messages"),
        ({"seed": -1}, "greater than or equal to 0", "seed"),
        ({"temperature": 9}, "less than or equal to 2", "temperature"),
        ({"messages": [{"role": "user", "content": 5}]}, "valid string", "messages[0].content"),
        ({"max_tokens": 0}, "greater than or equal to 1", "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4", "stop"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "string"}},
                    }
                ]
            },
            "the arguments must be an object",
            "tools[0].function.parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
            "not a JSON Schema",
            "tools[0].function.parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}] * 2},
            "two tools are named 'f'",
            "tools[1].function.name",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "'g', which is not among the tools",
            None,
        ),
        ({"functions": [{"name": "f"}]}, "send tools instead", "functions"),
        ({"extra_body": {"agent": {"tools": ["Nope"]}}}, "unknown tools ['Nope']", None),
        ({"extra_body": {"agent": {"tools": ["Nope"]}}, "stream": True}, "unknown tools", None),
    ],
)
def test_bad_requests_are_400_in_openai_shape(oai, kwargs, problem, param):
    kwargs = {"model": "scripted", "messages": _ask()} | kwargs
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(**kwargs)
    assert problem in refused.value.message
    assert refused.value.param == param
    assert refused.value.type == "invalid_request_error"


def test_a_body_that_is_not_json_is_400_in_openai_shape(http):
    response = http.post(
        "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "the body is not valid JSON",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_server_tools_can_be_chosen_with_the_agent_extension(oai, backend):
    backend.queue(CALL_REPLY, CALL_REPLY)
    completion = oai.chat.completions.create(
        model="scripted", messages=_ask(), extra_body={"agent": {"tools": ["Echo"], "max_calls": 0}}
    )
    # No calls allowed: the model's call is answered with an error it can read.
    assert completion.model_extra["agent"]["trace"][0]["error"].startswith("call limit reached")
    completion = oai.chat.completions.create(
        model="scripted", messages=_ask(), extra_body={"agent": {"tools": []}}
    )
    # No tools at all: there is nothing to call, and the brackets are the model's text.
    assert completion.model_extra["agent"]["trace"] == []
    assert completion.choices[0].message.content == 'It is [Echo("olleh")'


def test_stop_strings_and_max_tokens_reach_the_engine(oai, backend):
    backend.queue("First part. STOP second part", "abcdefghij", "abcdefghij", "abcdefghij")
    stopped = oai.chat.completions.create(
        model="scripted", messages=_ask(), stop="STOP", temperature=0.7, top_p=0.9, seed=3
    )
    assert stopped.choices[0].message.content == "First part."
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.model_extra["agent"]["stop_reason"] == "stop"
    short = oai.chat.completions.create(model="scripted", messages=_ask(), max_tokens=5)
    assert short.choices[0].message.content == "abcde"
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 5
    newer = oai.chat.completions.create(
        model="scripted", messages=_ask(), max_tokens=5, max_completion_tokens=3
    )
    assert newer.choices[0].message.content == "abc"
    content, chunks = _stream(oai, messages=_ask(), max_tokens=4)
    assert content == "abcd" and chunks[-1].choices[0].finish_reason == "length"


def test_disconnect_mid_stream_stops_the_generation():
    backend = _Backend(step_s=0.01)
    backend.queue("x" * 2000)  # 20 s of steps if nobody stops them
    for http, oai in _serve(backend):
        body = {"messages": _ask(), "stream": True, "max_tokens": 4096}
        seen = 0
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                seen += '"content":"x' in line
                if seen == 3:
                    break  # leaving the block closes the connection mid-stream
        wait_idle(http)  # the answer's generator has closed: nothing feeds the model any more
        assert len(backend.sessions[-1].feeds) < 300, "the engine went on after the client left"
        assert seen == 3
        assert http.get("/healthz").json() == {"status": "ok"}
        backend.step_s = 0.0
        backend.queue("Still here.")
        again = oai.chat.completions.create(model="scripted", messages=_ask())
        assert again.choices[0].message.content == "Still here."


def test_an_error_mid_stream_is_an_sse_error_then_done():
    backend = _Backend(fail_after=5)
    backend.queue("a long answer that will not be finished")
    for http, oai in _serve(backend):
        body = {"messages": _ask(), "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = [line for line in response.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        error = json.loads(lines[-2].removeprefix("data: "))["error"]
        assert error["type"] == "server_error" and "the model broke" in error["message"]
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines[1:-2]]
        streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert streamed == "a lon"  # what the model wrote before it broke (5 feeds)
        backend.queue("again")
        with pytest.raises(openai.APIError, match="the model broke"):
            _stream(oai, messages=_ask())
        backend.queue("again")
        with pytest.raises(openai.InternalServerError) as failed:
            oai.chat.completions.create(model="scripted", messages=_ask())
        assert failed.value.type == "server_error"
        assert http.get("/healthz").status_code == 200


def test_a_full_queue_is_429_and_a_slow_answer_times_out():
    backend = _Backend(step_s=0.02)
    backend.queue("x" * 2000, "y" * 2000, "Quick.")  # the refused request takes none
    settings = Settings(max_active_answers=1, max_queued_answers=0, request_timeout_s=1.0)
    for http, oai in _serve(backend, settings):
        body = {"messages": _ask(), "stream": True, "max_tokens": 4096}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200  # holds the one slot while it streams
            with pytest.raises(openai.RateLimitError) as busy:
                oai.chat.completions.create(model="scripted", messages=_ask())
            assert busy.value.response.headers["retry-after"].isdigit()
            lines = [line for line in response.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        error = json.loads(lines[-2].removeprefix("data: "))["error"]
        assert error["type"] == "timeout" and "limit of 1 s" in error["message"]
        with pytest.raises(openai.InternalServerError) as slow:
            oai.chat.completions.create(model="scripted", messages=_ask(), max_tokens=4096)
        assert slow.value.response.status_code == 504 and slow.value.type == "timeout"
        assert len(backend.sessions) == 2
        backend.step_s = 0.0
        wait_idle(http)
        assert len(backend.sessions[-1].feeds) < 2000  # the slow answers stopped
        quick = oai.chat.completions.create(model="scripted", messages=_ask())
        assert quick.choices[0].message.content == "Quick."  # and gave their slot back


class _FullBackend(_Backend):
    def new_session(self) -> ScriptedSession:
        raise ModelBusy("the model's context is full; try again shortly")


def test_a_full_model_is_503_with_retry_after_on_both_routes():
    # One error module maps each error to its status on both routes (before, a busy model was a
    # 500 on this one).
    for http, oai in _serve(_FullBackend()):
        with pytest.raises(openai.InternalServerError) as busy:
            oai.chat.completions.create(model="scripted", messages=_ask())
        assert busy.value.response.status_code == 503
        assert busy.value.type == "service_unavailable" and "context is full" in busy.value.message
        assert busy.value.response.headers["retry-after"] == "5"
        native = http.post("/v1/ask", json={"question": "Say hello"})
        assert native.status_code == 503 and native.headers["retry-after"] == "5"
        assert "context is full" in native.json()["error"]


# -- AnswerStream on its own ------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "a", "b ", " ", "  ", "\n", ".", ",", "(", ")", "[", "]", "[1]", "[Echo(", '"x"', "x)",
        "[Echo(1)]", "[Echo(2) → 3]", " → 4]", "→", "Echo", "-", ">", "[Calculator]", "\n  ",
    ]
)  # fmt: skip


@given(st.lists(_PIECES, max_size=30), st.data())
def test_answer_stream_sends_what_strip_calls_keeps(pieces, data):
    text = "".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    stream, sent = AnswerStream(), []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        sent.append(stream.add(text[start:end]))
        assert strip_calls(text).startswith("".join(sent))
    sent.append(stream.finish(strip_calls(text)))
    assert "".join(sent) == strip_calls(text)


def test_answer_stream_holds_back_only_what_may_change():
    stream = AnswerStream()
    assert stream.add("It is ") == "It is"
    assert stream.add("[Echo(x)") == ""  # a call is being written
    assert stream.add("]") == ""  # over, but whether a space follows is not known yet
    assert stream.add(" hello") == " hello"
    assert stream.add(" and more") == " and more"
    assert stream.finish("It is hello and more") == ""


def test_several_answers_stream_the_first_as_reasoning_until_the_vote(oai, backend):
    backend.queue("Two and three: 5.", "It is 5.")
    agent = {"strategy": "toolformer", "samples": 2}
    stream = oai.chat.completions.create(
        model="scripted", messages=_ask(), stream=True, extra_body={"agent": agent}
    )
    deltas = [c.choices[0].delta for c in stream if c.choices]
    reasoning = [(d.model_extra or {}).get("reasoning_content") for d in deltas]
    first_reasoning = next(i for i, r in enumerate(reasoning) if r)
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert first_reasoning < first_content
    assert "".join(r or "" for r in reasoning) in ("Two and three: 5.", "It is 5.")
    assert "".join(d.content or "" for d in deltas) in ("Two and three: 5.", "It is 5.")
