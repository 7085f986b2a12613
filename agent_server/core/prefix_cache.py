"""Sessions that have read a prompt's shared start, forked for each answer (`PrefixCache`), and
kept on disk between processes (`SavedPrefixes`)."""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
from collections import OrderedDict
from pathlib import Path

from agent_server.backends.base import Backend, Session
from agent_server.files import write_atomically

log = logging.getLogger(__name__)


class PrefixCache:
    """Sessions that have read a prompt's shared start (instructions, tools, examples), forked
    for each answer, so only the question and history are encoded per request.

    Used when the backend can fork sessions (`prefix_caching`); the few most recent prefixes are
    kept (one per tool set in use). With `saved`, a prefix read once is written to disk and a
    later process loads it instead of reading it again. Runs on the model thread, like every
    forward pass.
    """

    def __init__(self, backend: Backend, size: int = 4, saved: SavedPrefixes | None = None) -> None:
        self._backend = backend
        self._enabled = backend.prefix_caching
        self._size = size
        self._saved = saved if backend.state_key is not None else None
        self._sessions: OrderedDict[tuple[int, ...], Session] = OrderedDict()
        # Answers open sessions from several model threads when the backend batches.
        self._lock = threading.Lock()
        self.hits = 0  # answers that started from a cached prefix
        self.loaded = 0  # prefixes loaded from disk instead of read

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
            base = self._load(key) or self._read(key)
            self._sessions[key] = base
            while len(self._sessions) > self._size:
                self._sessions.popitem(last=False)
        else:
            self.hits += 1
        self._sessions.move_to_end(key)
        return base.fork()

    def _load(self, key: tuple[int, ...]) -> Session | None:
        if self._saved is None:
            return None
        session = self._saved.load(self._backend, list(key))
        self.loaded += session is not None
        return session

    def _read(self, key: tuple[int, ...]) -> Session:
        session = self._backend.new_session()
        session.feed(list(key))
        if self._saved is not None:
            self._saved.save(self._backend, list(key), session)
        return session


# A saved prefix file: this header, the SHA-256 of what follows it, the token count, the tokens
# (int32, little-endian) and the backend's state bytes.
MAGIC = b"agent-server prefix 1\n"
_COUNT = struct.Struct("<I")


class SavedPrefixes:
    """Prompt starts' KV caches as files in `folder`, named by a digest of the backend's
    `state_key` and the exact tokens.

    A file is trusted only if its checksum, its tokens and the backend's load all agree; anything
    else (a damaged file, another model's, another llama.cpp's) is ignored with a log line and
    replaced by a fresh read. The `keep` most recently used files stay.
    """

    def __init__(self, folder: Path, keep: int = 16) -> None:
        self.folder = folder
        self.keep = keep

    def path(self, backend: Backend, tokens: list[int]) -> Path:
        digest = hashlib.sha256(f"{backend.state_key}\n".encode())
        digest.update(_token_bytes(tokens))
        return self.folder / f"{digest.hexdigest()[:32]}.kv"

    def load(self, backend: Backend, tokens: list[int]) -> Session | None:
        path = self.path(backend, tokens)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("saved prompt cache %s unreadable (%s): reading the prompt", path, exc)
            return None
        state = _state_of(data, tokens)
        session = None if state is None else backend.restore(state, len(tokens))
        if session is None:
            log.warning("saved prompt cache %s does not fit this model: reading the prompt", path)
            return None
        os.utime(path)  # most recently used: the last to be pruned
        return session

    def save(self, backend: Backend, tokens: list[int], session: Session) -> None:
        state = session.save()
        if state is None:
            return
        body = _COUNT.pack(len(tokens)) + _token_bytes(tokens) + state
        path = self.path(backend, tokens)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomically(path, MAGIC + hashlib.sha256(body).digest() + body)
            self._prune()
        except OSError as exc:  # a full or read-only disk costs the next start time, no more
            log.warning("could not save the prompt cache to %s: %s", path, exc)

    def _prune(self) -> None:
        files = sorted(self.folder.glob("*.kv"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in files[self.keep :]:
            stale.unlink(missing_ok=True)


def _token_bytes(tokens: list[int]) -> bytes:
    return struct.pack(f"<{len(tokens)}i", *tokens)


def _state_of(data: bytes, tokens: list[int]) -> bytes | None:
    """The state bytes of a saved file, if its checksum holds and it is of exactly `tokens`."""
    start = len(MAGIC) + 32
    checksum = data[len(MAGIC) : start]
    if not data.startswith(MAGIC) or hashlib.sha256(data[start:]).digest() != checksum:
        return None
    if len(data) < start + _COUNT.size:
        return None
    (count,) = _COUNT.unpack_from(data, start)
    begin = start + _COUNT.size
    end = begin + 4 * count
    if count != len(tokens) or data[begin:end] != _token_bytes(tokens):
        return None
    return data[end:]
