"""A fake model for tests: it writes queued replies, one character per token.

Each generation takes the next reply from the queue. A reply is a list of parts: the model
writes the first part, then waits; when the engine splices something in (a tool result), it
writes the next part. So `["It is [Calculator(2+2)", " 4."]` plays a model that calls the
calculator and then repeats its result. Every prompt the engine sends is recorded. A fork (the
engine forks a session for each of several samples) plays the next reply in the queue; its first
token comes from the logits its parent gave for the prompt, as with a real model, so the replies
of one prompt's samples must begin alike.

Sessions record every feed, so tests can check that nothing is encoded twice. It goes through
the same `Session` seam and `TokenChooser` as a real model, so tests exercise
the real decoding rules. No magic strings: what it writes depends only on the queue.
"""

from __future__ import annotations

import string
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

from agent_server.backends.base import Logits, Vocabulary

EOS = 0
Reply = str | Sequence[str]


class ScriptedBackend:
    name = "scripted"
    kind = "scripted"
    parallel = 1
    batching = False
    prefix_caching = False
    state_key = None

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self._chars: list[str] = ["<eos>", *string.printable]
        self._ids = {c: i for i, c in enumerate(self._chars)}
        self.replies: deque[list[str]] = deque()
        self.prompts: list[str] = []
        self.sessions: list[ScriptedSession] = []
        self.vocab = Vocabulary(
            size=lambda: len(self._chars), piece=self._piece, eos_ids=frozenset({EOS})
        )
        self.queue(*replies)

    def queue(self, *replies: Reply) -> None:
        for reply in replies:
            self.replies.append([reply] if isinstance(reply, str) else list(reply))

    def _piece(self, token_id: int) -> str:
        return "" if token_id == EOS else self._chars[token_id]

    def encode(self, text: str) -> list[int]:
        for char in text:
            if char not in self._ids:
                self._ids[char] = len(self._chars)
                self._chars.append(char)
        return [self._ids[c] for c in text]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(self._piece(i) for i in token_ids)

    def close(self) -> None:
        """Nothing to free."""

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        system = "You are a scripted model." if system is None else system
        return f"<system>{system}</system>\n<user>{user}</user>\n<assistant>"

    def new_session(self) -> ScriptedSession:
        reply = self.replies.popleft() if self.replies else [""]
        session = ScriptedSession(self, reply)
        self.sessions.append(session)
        return session

    def restore(self, state: bytes, length: int) -> None:
        """Never asked: `state_key` is None, so no session of this backend is saved."""


class ScriptedSession:
    def __init__(self, backend: ScriptedBackend, parts: list[str]) -> None:
        self._backend = backend
        self._parts = parts
        self._part = 0
        self._cursor = 0
        self._tokens: list[int] = []
        self._interrupted = False
        self.feeds: list[list[int]] = []  # every feed, so tests can see nothing is re-encoded

    @property
    def length(self) -> int:
        return len(self._tokens)

    def feed(self, token_ids: Sequence[int]) -> Logits:
        self.feeds.append(list(token_ids))
        if not self._tokens:
            self._backend.prompts.append(self._backend.decode(token_ids))
        foreign = list(token_ids)
        if self._tokens:  # after the prompt: first the tokens this model chose, then a splice
            while foreign and foreign[0] == self._expected():
                self._cursor += 1
                foreign.pop(0)
            if foreign and self._cursor >= len(self._parts[self._part]):
                self._interrupted = True
        self._tokens.extend(token_ids)
        if self._interrupted and self._part + 1 < len(self._parts):
            self._part, self._cursor, self._interrupted = self._part + 1, 0, False
        nxt = self._expected()  # may grow the vocabulary, so before sizing the logits
        logits = np.full(self._backend.vocab.size(), -np.inf, dtype=np.float32)
        logits[EOS if nxt is None else nxt] = 0.0
        return logits

    def fork(self) -> ScriptedSession:
        """A session that has read the same tokens and writes the next queued reply."""
        reply = self._backend.replies.popleft() if self._backend.replies else [""]
        twin = ScriptedSession(self._backend, reply)
        twin._tokens = list(self._tokens)
        self._backend.sessions.append(twin)
        return twin

    def save(self) -> None:
        return None

    def _expected(self) -> int | None:
        part = self._parts[self._part]
        if self._cursor >= len(part):
            return None
        return self._backend.encode(part[self._cursor])[0]
