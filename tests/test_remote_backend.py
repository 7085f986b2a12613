"""The remote backend against a fake server (an httpx MockTransport at the HTTP seam).

The contract suite (test_backends.py) runs it against llama-cpp-python's real server; these
cover what that server never does: no log-probabilities, errors, a stream that breaks off.
The vocabulary is the real default GGUF's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest

from agent_server.backends.gguf import GgufTokenizer, load_model
from agent_server.backends.remote import RemoteBackend, RemoteConfig
from agent_server.errors import ModelBusy, ModelNotAvailable
from agent_server.models import resolve
from agent_server.settings import Settings

pytestmark = [pytest.mark.model]

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[GgufTokenizer]:
    settings = Settings()
    tokens = GgufTokenizer(load_model(resolve(settings.model, settings.cache_dir), vocab_only=True))
    yield tokens


def remote(tokenizer: GgufTokenizer, handler: Handler) -> RemoteBackend:
    config = RemoteConfig(url="http://server", model="m", top_k=3)
    return RemoteBackend(tokenizer, "m", config, transport=httpx.MockTransport(handler))


def sse(*chunks: dict[str, object]) -> httpx.Response:
    lines = [f"data: {json.dumps({'choices': [c]})}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    headers = {"content-type": "text/event-stream"}
    return httpx.Response(200, content="".join(lines).encode(), headers=headers)


def step(text: str, top: dict[str, float]) -> dict[str, object]:
    """One streamed token as OpenAI's legacy completions format has it."""
    return {"text": text, "logprobs": {"tokens": [text], "top_logprobs": [top]}}


def test_top_logprobs_become_logits_and_the_stream_is_reused(tokenizer):
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if "logit_bias" in bodies[-1]:  # what else, at the end: nothing here
            return sse()
        return sse(
            step(" Paris", {" Paris": -0.1, " Lyon": -3.0}),
            step(".", {".": -0.2, ",": -2.0}),
            {"text": "", "finish_reason": "stop"},
        )

    backend = remote(tokenizer, handler)
    session = backend.new_session()
    paris, lyon = backend.encode(" Paris")[0], backend.encode(" Lyon")[0]
    first = session.feed(backend.encode("The capital of France is"))
    assert int(first.argmax()) == paris
    assert first[paris] == pytest.approx(-0.1) and first[lyon] == pytest.approx(-3.0)
    assert first.max() - sorted(first)[-3] > 20  # every other token far below the top k
    second = session.feed([paris])  # the server's own token: the same stream goes on
    assert backend.decode([int(second.argmax())]) == "."
    end = session.feed([int(second.argmax())])
    assert int(end.argmax()) in backend.vocab.eos_ids  # the server stopped: so does the engine
    assert len([b for b in bodies if "logit_bias" not in b]) == 1
    assert bodies[0]["prompt"] == "The capital of France is" and bodies[0]["logprobs"] == 3
    assert bodies[0]["temperature"] == 0 and bodies[0]["stream"] is True


def test_another_token_than_the_servers_opens_a_new_stream_from_the_text_so_far(tokenizer):
    prompts = []

    def handler(request: httpx.Request) -> httpx.Response:
        prompts.append(json.loads(request.content)["prompt"])
        return sse(step(" a", {" a": -0.5, "[": -1.0}))

    backend = remote(tokenizer, handler)
    session = backend.new_session()
    session.feed(backend.encode("<|im_start|>user\nHi<|im_end|>"))
    session.feed(backend.encode("["))  # the engine opened a call instead
    assert prompts == ["<|im_start|>user\nHi<|im_end|>", "<|im_start|>user\nHi<|im_end|>["]


def test_without_logprobs_the_servers_tokens_are_all_the_engine_sees(tokenizer):
    def handler(_: httpx.Request) -> httpx.Response:
        return sse({"text": " Paris is", "logprobs": None})

    backend = remote(tokenizer, handler)
    session = backend.new_session()
    ids = backend.encode(" Paris is")
    first = session.feed(backend.encode("Capital:"))
    assert int(first.argmax()) == ids[0] and (first == first.max()).sum() == 1
    second = session.feed([ids[0]])
    assert int(second.argmax()) == ids[1]


def test_where_the_server_ends_the_engine_still_gets_its_next_best_tokens(tokenizer):
    """After a tool's result the server may choose to end at once, sending no log-probabilities;
    the engine does not let an answer end there, and must see what else the server would write
    (asked again with end-of-text ruled out), not an arbitrary token."""
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if "logit_bias" not in bodies[-1]:
            return sse({"text": "", "finish_reason": "stop"})
        return sse(step(" The", {" The": -0.4, " So": -1.5}))

    backend = remote(tokenizer, handler)
    logits = backend.new_session().feed(backend.encode("[Calculator(2*3) → 6]"))
    eos = sorted(backend.vocab.eos_ids)
    assert int(logits.argmax()) in eos  # the server's own choice comes first
    logits[eos] = -np.inf  # the engine's, when it may not end
    the, so = backend.encode(" The")[0], backend.encode(" So")[0]
    assert int(logits.argmax()) == the and logits[so] == pytest.approx(-1.5)
    besides = bodies[-1]
    assert besides["logit_bias"] == {str(i): -100 for i in eos} and besides["max_tokens"] == 1
    assert besides["stream"] is True  # the server's non-streamed log-probabilities cost GBs
    assert besides["prompt"] == "[Calculator(2*3) → 6]"


def test_a_stream_cut_off_is_asked_again_from_where_it_broke(tokenizer):
    """llama-cpp-python's server cuts a stream when another request comes in (a health check's
    GET /v1/models will do): the session asks again from its text so far, once."""
    prompts = []

    def broken() -> Iterator[bytes]:
        yield f"data: {json.dumps({'choices': [step(' Paris', {' Paris': -0.1})]})}\n\n".encode()
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    def handler(request: httpx.Request) -> httpx.Response:
        prompts.append(json.loads(request.content)["prompt"])
        if len(prompts) == 1:
            return httpx.Response(
                200, content=broken(), headers={"content-type": "text/event-stream"}
            )
        return sse(step(".", {".": -0.2}))

    backend = remote(tokenizer, handler)
    session = backend.new_session()
    paris = backend.encode(" Paris")[0]
    assert int(session.feed(backend.encode("Capital:")).argmax()) == paris
    assert backend.decode([int(session.feed([paris]).argmax())]) == "."
    assert prompts == ["Capital:", "Capital: Paris"]


def test_a_stream_cut_twice_in_a_row_is_an_error(tokenizer):
    def handler(_: httpx.Request) -> httpx.Response:
        def cut() -> Iterator[bytes]:
            raise httpx.RemoteProtocolError("peer closed connection")
            yield b""

        return httpx.Response(200, content=cut(), headers={"content-type": "text/event-stream"})

    with pytest.raises(ModelBusy, match="broke off"):
        remote(tokenizer, handler).new_session().feed([1, 2, 3])


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(503, text="loading model"), "answered 503: loading model"),
        (sse(), "empty completion"),
    ],
)
def test_server_failures_are_model_busy_errors(tokenizer, response, message):
    backend = remote(tokenizer, lambda _: response)
    with pytest.raises(ModelBusy, match=message):
        backend.new_session().feed([1, 2, 3])


def test_an_unreachable_server_or_another_model_is_reported_at_start(tokenizer):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ModelNotAvailable, match="no inference server at http://server"):
        remote(tokenizer, refuse).check()
    other = remote(tokenizer, lambda _: httpx.Response(200, json={"data": [{"id": "llama-3"}]}))
    with pytest.raises(ModelNotAvailable, match=r"serves \['llama-3'\], not 'm'"):
        other.check()
