"""The prompt-prefix cache: a prompt's shared start is read once, then each answer forks it."""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from agent_server.core.prefix_cache import PrefixCache, SavedPrefixes


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

    def save(self) -> bytes:
        return struct.pack(f"<{len(self.read)}i", *self.read)


class ForkingBackend:
    """Characters are tokens; counts every token fed, to show what was computed. A saved state
    is the tokens read, which `restore` checks as llama.cpp checks its own format."""

    def __init__(self, prefix_caching: bool = True, state_key: str | None = "model-a") -> None:
        self.prefix_caching = prefix_caching
        self.state_key = state_key
        self.fed = 0
        self.restored = 0

    def restore(self, state: bytes, length: int) -> ForkingSession | None:
        if len(state) != 4 * length:
            return None
        self.restored += 1
        return ForkingSession(self, list(struct.unpack(f"<{length}i", state)))

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


def test_a_saved_prefix_is_loaded_by_the_next_process_instead_of_read(tmp_path: Path) -> None:
    first = ForkingBackend()
    PrefixCache(first, saved=SavedPrefixes(tmp_path)).open(first.encode("SYSTEM|"))  # type: ignore[arg-type]
    assert first.fed == len("SYSTEM|") and len(list(tmp_path.glob("*.kv"))) == 1
    second = ForkingBackend()  # a new process: nothing in memory
    cache = PrefixCache(second, saved=SavedPrefixes(tmp_path))  # type: ignore[arg-type]
    session = cache.open(second.encode("SYSTEM|"))
    assert second.fed == 0 and cache.loaded == 1
    assert session.read == second.encode("SYSTEM|")  # type: ignore[attr-defined]
    # Another prefix, or another model's key, is a different file: read, not loaded.
    other = ForkingBackend(state_key="model-b")
    PrefixCache(other, saved=SavedPrefixes(tmp_path)).open(other.encode("SYSTEM|"))  # type: ignore[arg-type]
    assert other.fed == len("SYSTEM|") and other.restored == 0
    assert len(list(tmp_path.glob("*.kv"))) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-3],  # cut short
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # a flipped bit
        lambda _: b"something else entirely",
        lambda _: b"",
    ],
)
def test_a_damaged_saved_prefix_is_ignored_with_a_log_line_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage
) -> None:
    backend = ForkingBackend()
    saved = SavedPrefixes(tmp_path)
    prefix = backend.encode("SYSTEM|")
    PrefixCache(backend, saved=saved).open(prefix)  # type: ignore[arg-type]
    path = saved.path(backend, prefix)  # type: ignore[arg-type]
    path.write_bytes(damage(path.read_bytes()))
    again = ForkingBackend()
    with caplog.at_level(logging.WARNING):
        session = PrefixCache(again, saved=saved).open(prefix)  # type: ignore[arg-type]
    assert "does not fit" in caplog.text
    assert again.restored == 0 and again.fed == len(prefix)  # read afresh, never trusted
    assert session.read == prefix  # type: ignore[attr-defined]
    third = ForkingBackend()
    PrefixCache(third, saved=saved).open(prefix)  # type: ignore[arg-type]
    assert third.fed == 0  # the fresh read was saved over the damaged file


def test_a_file_of_other_tokens_under_the_same_name_is_not_trusted(tmp_path: Path) -> None:
    backend = ForkingBackend()
    saved = SavedPrefixes(tmp_path)
    PrefixCache(backend, saved=saved).open(backend.encode("A|"))  # type: ignore[arg-type]
    a_file = saved.path(backend, backend.encode("A|"))  # type: ignore[arg-type]
    a_file.replace(saved.path(backend, backend.encode("B|")))  # type: ignore[arg-type]
    assert saved.load(backend, backend.encode("B|")) is None  # type: ignore[arg-type]


def test_only_the_most_recently_used_saved_prefixes_are_kept(tmp_path: Path) -> None:
    backend = ForkingBackend()
    saved = SavedPrefixes(tmp_path, keep=2)
    for prefix in ("A|", "B|", "C|"):
        PrefixCache(backend, saved=saved).open(backend.encode(prefix))  # type: ignore[arg-type]
    names = {p.name for p in tmp_path.glob("*.kv")}
    expected = {saved.path(backend, backend.encode(p)).name for p in ("B|", "C|")}  # type: ignore[arg-type]
    assert names == expected


def test_a_backend_that_cannot_save_never_touches_the_folder(tmp_path: Path) -> None:
    backend = ForkingBackend(state_key=None)
    PrefixCache(backend, saved=SavedPrefixes(tmp_path / "prompts")).open(backend.encode("A|"))  # type: ignore[arg-type]
    assert not (tmp_path / "prompts").exists()


def test_an_unwritable_folder_costs_only_the_saving(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "prompts"
    blocker.write_text("a file where the folder should be")
    backend = ForkingBackend()
    with caplog.at_level(logging.WARNING):
        session = PrefixCache(backend, saved=SavedPrefixes(blocker)).open(backend.encode("A|"))  # type: ignore[arg-type]
    assert session.read == backend.encode("A|")  # type: ignore[attr-defined]
    assert "could not save the prompt cache" in caplog.text
