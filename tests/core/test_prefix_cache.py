"""The prompt-prefix cache: a prompt's shared start is read once, then each answer forks it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent_server.core.prefix_cache import PrefixCache


class ForkingSession:
    def __init__(self, backend: ForkingBackend, read: list[int] | None = None) -> None:
        self.backend = backend
        self.read = list(read or [])

    @property
    def length(self) -> int:
        return len(self.read)

    def feed(self, token_ids: Sequence[int]) -> np.ndarray:
        self.backend.fed += len(token_ids)
        self.read += token_ids
        return np.zeros(4, dtype=np.float32)

    def fork(self) -> ForkingSession:
        return ForkingSession(self.backend, self.read)


class ForkingBackend:
    """Characters are tokens; counts every token fed, to show what was computed."""

    def __init__(self, prefix_caching: bool = True) -> None:
        self.prefix_caching = prefix_caching
        self.fed = 0

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def new_session(self) -> ForkingSession:
        return ForkingSession(self)


def test_the_prefix_is_read_once_and_each_answer_gets_its_own_copy() -> None:
    backend = ForkingBackend()
    cache = PrefixCache(backend)  # type: ignore[arg-type]
    prompt = backend.encode("SYSTEM|question one")
    shared = cache.usable("SYSTEM|", prompt)
    assert shared == backend.encode("SYSTEM|")
    first = cache.open(shared)
    second = cache.open(shared)
    assert backend.fed == len(shared) and cache.hits == 1
    first.feed(backend.encode("question one"))
    assert second.read == shared  # the copies do not share what they read afterwards
    assert first.read == prompt


def test_no_sharing_when_it_would_be_wrong_or_unsupported() -> None:
    backend = ForkingBackend()
    cache = PrefixCache(backend)  # type: ignore[arg-type]
    prompt = backend.encode("SYSTEM|q")
    assert cache.usable("", prompt) == []
    assert cache.usable("OTHER|", prompt) == []  # not how the prompt's tokens begin
    assert cache.usable("SYSTEM|q", prompt) == []  # nothing would be left to read
    off = PrefixCache(ForkingBackend(prefix_caching=False))  # type: ignore[arg-type]
    assert off.usable("SYSTEM|", prompt) == []
    fresh = cache.open([])
    assert fresh.read == [] and backend.fed == 0


def test_only_the_most_recent_prefixes_are_kept() -> None:
    backend = ForkingBackend()
    cache = PrefixCache(backend, size=2)  # type: ignore[arg-type]
    for prefix in ("A|", "B|", "C|", "A|"):
        cache.open(backend.encode(prefix))
    assert cache.hits == 0  # "A|" was dropped when "C|" came, so it was read again
    assert backend.fed == 8
    cache.open(backend.encode("C|"))
    assert cache.hits == 1
