"""Sessions that have read a prompt's shared start, forked for each answer (`PrefixCache`)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from agent_server.backends.base import Backend, Session


class PrefixCache:
    """Sessions that have read a prompt's shared start (instructions, tools, examples), forked
    for each answer, so only the question and history are encoded per request.

    Used when the backend can fork sessions (`prefix_caching`); the few most recent prefixes are
    kept (one per tool set in use). Runs on the model thread, like every forward pass.
    """

    def __init__(self, backend: Backend, size: int = 4) -> None:
        self._backend = backend
        self._enabled = backend.prefix_caching
        self._size = size
        self._sessions: OrderedDict[tuple[int, ...], Session] = OrderedDict()
        # Answers open sessions from several model threads when the backend batches.
        self._lock = threading.Lock()
        self.hits = 0  # answers that started from a cached prefix

    def usable(self, prefix: str, prompt_ids: list[int]) -> list[int]:
        """The prompt's first tokens that are `prefix`'s own, or [] if they can't be shared."""
        if not (self._enabled and prefix):
            return []
        prefix_ids = self._backend.encode(prefix)
        # Tokens can merge across the boundary; then the prefix is not a prefix of the tokens.
        if prompt_ids[: len(prefix_ids)] != prefix_ids or len(prefix_ids) >= len(prompt_ids):
            return []
        return prefix_ids

    def open(self, prefix_ids: list[int]) -> Session:
        """A new session that has read `prefix_ids` (computed once, then copied)."""
        if not prefix_ids:
            return self._backend.new_session()
        with self._lock:
            return self._open(tuple(prefix_ids))

    def _open(self, key: tuple[int, ...]) -> Session:
        base = self._sessions.get(key)
        if base is None:
            base = self._backend.new_session()
            base.feed(list(key))
            self._sessions[key] = base
            while len(self._sessions) > self._size:
                self._sessions.popitem(last=False)
        else:
            self.hits += 1
        self._sessions.move_to_end(key)
        return base.fork()
