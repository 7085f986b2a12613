"""The remote backend: a model on an inference server that speaks OpenAI's *completions* API.

vLLM, TGI, llama.cpp's server, llama-cpp-python's server and Ollama all do. The engine still
chooses every token; the server proposes them. A session streams one completion of its text
(greedy, `logprobs`: the top k tokens of every step) and hands the engine each step's top k as
logits. While the engine takes the server's token, the same stream goes on; when it takes
another (a call opened by the top-k rule, a tool-name constraint, sampling, a splice), the
stream is closed and a new one sent with the text so far. The server's prefix caching keeps
that cheap: only the new tokens are encoded there.

Tokens are the local GGUF's (`gguf.GgufTokenizer`, vocabulary only): the server runs the same
model and the API speaks text, so token pieces are matched by their text. A step's logits are
the top k's log-probabilities and, for every other token, a floor below them. A server that
gives no log-probabilities gives the engine its chosen token alone: the call rule can then only
open a call the server would have written anyway (greedy), as the README says. Where the server
ends, its stop carries no log-probabilities: the session asks once more with end-of-text ruled
out, so that an engine that may not end there (after a tool's result) sees the next best tokens.
A stream the server cuts off (llama-cpp-python's does, when another request comes in) is asked
again from where it broke.

Left out: chat completions (the engine renders its own prompt) and servers' batch endpoints.
"""

from __future__ import annotations

import json
import queue
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from agent_server.backends.base import Logits
from agent_server.backends.gguf import GgufTokenizer
from agent_server.errors import ModelBusy, ModelNotAvailable

# Every token outside the server's top k sits this far below the least likely of them.
FLOOR_BELOW = 30.0


@dataclass(frozen=True)
class RemoteConfig:
    url: str  # the server's base URL, e.g. http://127.0.0.1:8080 (without /v1)
    model: str  # the model name the server expects in requests
    api_key: str = ""
    top_k: int = 10  # log-probabilities asked for at every step (the call rule needs ≥ k)
    # Tokens one stream may run ahead: the engine usually takes them all; a longer stream
    # only wastes the server's time when the engine leaves it (a call, a stop string).
    lookahead: int = 64
    timeout_s: float = 60.0


@dataclass(frozen=True)
class _Step:
    logits: Logits
    token: int | None  # the server's choice, as a local token id (None: no such piece)
    ended: bool = False  # the server stopped here: it chose end-of-text and said nothing else


class RemoteBackend:
    kind = "remote"
    # Sessions are independent requests: the server schedules (and may batch) them.
    batching = True
    parallel = 8
    prefix_caching = False  # the server's own prefix cache does this job
    state_key = None

    def __init__(
        self,
        tokenizer: GgufTokenizer,
        name: str,
        config: RemoteConfig,
        transport: httpx.BaseTransport | None = None,  # tests: an httpx.MockTransport
    ) -> None:
        self.name = name
        self.config = config
        self._tokens = tokenizer
        self.vocab = tokenizer.vocab
        self.encode = tokenizer.encode
        self.decode = tokenizer.decode
        self.chat_prompt = tokenizer.chat_prompt
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        timeout = httpx.Timeout(config.timeout_s, connect=10.0)
        self._client = httpx.Client(
            base_url=config.url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._by_text: dict[str, int] | None = None

    def close(self) -> None:
        self._client.close()
        self._tokens.close()

    def new_session(self) -> RemoteSession:
        return RemoteSession(self, [])

    def restore(self, state: bytes, length: int) -> None:
        """Never asked: `state_key` is None, so no session of this backend is saved."""

    def check(self) -> None:
        """Raise `ModelNotAvailable` unless the server answers and serves `config.model`."""
        try:
            response = self._client.get("/v1/models")
            response.raise_for_status()
            served = [m.get("id") for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError) as exc:
            raise ModelNotAvailable(f"no inference server at {self.config.url}: {exc}") from exc
        if served and self.config.model not in served:
            raise ModelNotAvailable(
                f"the server at {self.config.url} serves {served}, not {self.config.model!r}"
            )

    def token_of(self, text: str) -> int | None:
        """The local token whose piece is `text` (the API names tokens by their text)."""
        if self._by_text is None:
            by_text: dict[str, int] = {}
            for i in range(self._tokens.size):
                piece = self._tokens.bytes([i], special=False).decode("utf-8", errors="ignore")
                by_text.setdefault(piece, i)
            by_text.pop("", None)  # special tokens and byte fragments: no text to match
            self._by_text = by_text
        return self._by_text.get(text)

    def text_of(self, token_ids: Sequence[int]) -> str:
        """The prompt text the server tokenizes back into `token_ids` (special markup kept)."""
        return self._tokens.bytes(token_ids, special=True).decode("utf-8", errors="replace")

    def besides_the_end(self, token_ids: Sequence[int]) -> Logits | None:
        """The server's top k after `token_ids` with end-of-text ruled out (`logit_bias`), as
        logits; None if it sends nothing.

        A completion that stops at once carries no log-probabilities, only that the server
        chose to end. The engine may not take that (an answer cannot end on a tool's result),
        and then it needs the next best tokens, which only a second request can tell. It is
        streamed like the others: llama-cpp-python's server computes a non-streamed
        completion's log-probabilities over its whole context (GBs: it was OOM-killed)."""
        ruled_out = {str(i): -100 for i in sorted(self.vocab.eos_ids)}
        stream = self.open_stream(token_ids, max_tokens=1, logit_bias=ruled_out)
        try:
            step = stream.next()
        finally:
            stream.close()
        return None if step is None else step.logits

    def open_stream(self, token_ids: Sequence[int], **options: Any) -> _Stream:
        body = {
            "model": self.config.model,
            "prompt": self.text_of(token_ids),
            "max_tokens": self.config.lookahead,
            "temperature": 0,
            "logprobs": self.config.top_k,
            "stream": True,
            **options,
        }
        return _Stream(self, self._client, body)


class RemoteSession:
    def __init__(self, backend: RemoteBackend, token_ids: list[int]) -> None:
        self._backend = backend
        self._ids = token_ids
        self._stream: _Stream | None = None
        self._predicted: int | None = None
        self._finalizer = weakref.finalize(self, _close_stream, [None])

    @property
    def length(self) -> int:
        return len(self._ids)

    def fork(self) -> RemoteSession:
        """A session with the same text: the server's prefix cache shares the work."""
        return RemoteSession(self._backend, list(self._ids))

    def save(self) -> None:
        return None

    def feed(self, token_ids: Sequence[int]) -> Logits:
        self._ids.extend(token_ids)
        if self._stream is None or list(token_ids) != [self._predicted]:
            self._reopen()
        assert self._stream is not None
        try:
            step = self._stream.next()
        except StreamBroken:
            step = None
        if step is None:  # the stream ran out (its lookahead) or was cut: ask again from here
            self._reopen()
            step = self._stream.next()  # cut again at once: the error goes to the engine
            if step is None:
                raise ModelBusy("the inference server sent an empty completion")
        self._predicted = step.token
        if step.ended:
            return self._end_or_next_best(step.logits)
        return step.logits

    def _end_or_next_best(self, end: Logits) -> Logits:
        """End-of-text first, as the server chose, and its next best tokens after it."""
        eos = sorted(self._backend.vocab.eos_ids)
        logits = self._backend.besides_the_end(self._ids)
        if logits is None:
            return end
        # Their log-probabilities are with the end ruled out; the end stays the first choice.
        logits[eos] = max(float(logits.max()), 0.0) + 1.0
        return logits

    def _reopen(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = self._backend.open_stream(self._ids)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _close_stream, [self._stream])


def _close_stream(holder: list[_Stream | None]) -> None:
    if holder[0] is not None:
        holder[0].close()


class StreamBroken(ModelBusy):
    """A stream that ended without its end. llama-cpp-python's server cuts the completion it is
    streaming whenever another request comes in (`interrupt_requests`: another answer's, or a
    health check's `GET /v1/models`, which takes the model's lock too), so a session asks again
    from where it is instead of failing its answer."""


class _Stream:
    """One streamed completion, read to its end by a thread of its own and taken a step at a time.

    Reading eagerly matters: a server that serves requests in turn holds its lock until a
    completion is sent, so a stream left unread (its session waiting on a tool, or on another
    session) would block every other session behind it.
    """

    def __init__(self, backend: RemoteBackend, client: httpx.Client, body: dict[str, Any]) -> None:
        self._backend = backend
        self._timeout_s = backend.config.timeout_s
        self._steps_read: queue.Queue[_Step | Exception | None] = queue.Queue()
        self._closed = False
        try:
            self._context = client.stream("POST", "/v1/completions", json=body)
            self._response = self._context.__enter__()
        except httpx.HTTPError as exc:
            raise ModelBusy(f"the inference server cannot be reached: {exc}") from exc
        if self._response.status_code != 200:
            detail = self._response.read().decode("utf-8", errors="replace")[:300]
            self.close()
            raise ModelBusy(f"the inference server answered {self._response.status_code}: {detail}")
        threading.Thread(target=self._read, name="remote-stream", daemon=True).start()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._context.__exit__(None, None, None)

    def next(self) -> _Step | None:
        """The next step, or None when the completion ended by its length."""
        try:
            item = self._steps_read.get(timeout=self._timeout_s)
        except queue.Empty:
            self.close()
            raise ModelBusy(
                f"the inference server sent nothing for {self._timeout_s:.0f} s"
            ) from None
        if isinstance(item, Exception):
            raise item
        return item

    def _read(self) -> None:
        """The reader thread: every chunk's steps into the queue, then None."""
        try:
            for line in self._response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                choices = json.loads(data).get("choices") or [{}]
                for step in self._steps(dict(choices[0])):
                    self._steps_read.put(step)
        except (httpx.HTTPError, ValueError, RuntimeError) as exc:
            if not self._closed:  # closing the stream ends this thread with an error: expected
                self._steps_read.put(
                    StreamBroken(f"the inference server's stream broke off: {exc}")
                )
        self._steps_read.put(None)

    def _steps(self, choice: dict[str, Any]) -> list[_Step]:
        steps = []
        logprobs = choice.get("logprobs") or {}
        tokens, tops = logprobs.get("tokens") or [], logprobs.get("top_logprobs") or []
        if tokens and len(tops) == len(tokens):
            for text, top in zip(tokens, tops, strict=True):
                steps.append(self._from_top(text, top or {text: 0.0}))
        elif text := choice.get("text") or "":
            # No log-probabilities: the chosen tokens alone (greedy).
            steps += [self._one_hot(i) for i in self._backend.encode(text)]
        if choice.get("finish_reason") == "stop" and not steps:
            steps.append(self._end())
        return steps

    def _from_top(self, chosen: str, top: dict[str, float]) -> _Step:
        logits = self._blank()
        known = {i: p for t, p in top.items() if (i := self._backend.token_of(t)) is not None}
        floor = min(top.values(), default=0.0) - FLOOR_BELOW
        logits[:] = floor
        for token, logprob in known.items():
            logits[token] = logprob
        return _Step(logits, self._backend.token_of(chosen))

    def _one_hot(self, token: int) -> _Step:
        logits = self._blank()
        logits[:] = -FLOOR_BELOW
        logits[token] = 0.0
        return _Step(logits, token)

    def _end(self) -> _Step:
        """The server stopped at an end-of-generation token (the session asks for what else
        it could have written, `RemoteSession._end_or_next_best`)."""
        logits = self._blank()
        logits[:] = -FLOOR_BELOW
        logits[sorted(self._backend.vocab.eos_ids)[0]] = 0.0
        return _Step(logits, None, ended=True)

    def _blank(self) -> Logits:
        return np.empty(self._backend.vocab.size(), dtype=np.float32)
