"""The seam between the engine and a language model.

A backend turns text into token ids and back, and opens *sessions*. A session is one growing
context with its own KV cache: `feed` appends tokens, encodes only those, and returns the logits
for the next token. The engine feeds each token it chooses and, after a tool call, the spliced
result, so a prefix is never encoded twice.

Token choice (greedy or sampled, the call rule, the name constraint) lives in
`agent_server.core.decoding`, so every backend decodes by the same rules.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agent_server.files import write_atomically

Logits = npt.NDArray[np.float32]
log = logging.getLogger(__name__)


class Session(Protocol):
    @property
    def length(self) -> int:
        """Tokens in the context so far."""
        ...

    def feed(self, token_ids: Sequence[int]) -> Logits:
        """Append and encode `token_ids`; return the next-token logits."""
        ...

    def fork(self) -> Session:
        """A new session that has read the same tokens (sharing or copying their KV cache)."""
        ...

    def save(self) -> bytes | None:
        """The session's KV cache as bytes for `Backend.restore`, or None where the backend
        can't save one (its `state_key` is None)."""
        ...


@runtime_checkable
class VerifyingSession(Session, Protocol):
    """A session that reads several tokens in one step and returns the logits after each, and
    forgets its last tokens: what checking a guess of the next tokens needs (`core.lookup`)."""

    def feed_each(self, token_ids: Sequence[int]) -> Logits:
        """Append and encode `token_ids`; the logits after each of them, one row per token."""
        ...

    def forget(self, count: int) -> None:
        """Drop the last `count` tokens from the context and its KV cache."""
        ...


class Backend(Protocol):
    @property
    def name(self) -> str:
        """What to call the model in responses and logs."""
        ...

    @property
    def kind(self) -> str:
        """Which implementation runs the model ("llamacpp", "transformers", ...)."""
        ...

    @property
    def parallel(self) -> int:
        """Answers that gain from running at once: the default of `max_active_answers`."""
        ...

    @property
    def batching(self) -> bool:
        """Whether sessions may feed from several threads at once (their steps then decode in
        one batch); else the engine steps them on one thread."""
        ...

    @property
    def prefix_caching(self) -> bool:
        """Whether the engine should keep forkable sessions of prompt starts (`PrefixCache`);
        False where forking copies more than it saves, or the server caches prefixes itself."""
        ...

    @property
    def state_key(self) -> str | None:
        """What a saved session depends on besides its tokens (the model's digest, the
        backend's version and layout), or None where sessions can't be saved and restored."""
        ...

    def restore(self, state: bytes, length: int) -> Session | None:
        """A session that has read `length` tokens, from `Session.save`'s bytes; None if they
        don't load (another model, a damaged file)."""
        ...

    @property
    def vocab(self) -> Vocabulary: ...

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special-token markup in it is honoured."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        """The model's chat template applied to one exchange, or None if it has none; `system`
        None leaves the template's own system prompt (Qwen's "You are Qwen, …")."""
        ...

    def new_session(self) -> Session: ...

    def close(self) -> None:
        """Free the model; no session may be used after."""
        ...


@dataclass
class Vocabulary:
    """What the decoder needs to know about tokens, computed lazily and cached.

    `piece` gives the text of one token on its own; byte fragments of a longer character come
    back as U+FFFD and so never match a tool name. `raw` gives its bytes (a fragment's own) and
    `special` whether it is a special token (`<|im_end|>`): what structured decoding's token
    table needs; without them, a piece's UTF-8 and the end-of-text tokens. With `saved`, the
    pieces are kept in that file (a JSON list) between processes: listing 150k of them through
    llama.cpp takes 0.4 s of every start.
    """

    size: Callable[[], int]
    piece: Callable[[int], str]
    eos_ids: frozenset[int]
    raw: Callable[[int], bytes] | None = None
    special: Callable[[int], bool] | None = None
    saved: Path | None = None
    _pieces: list[str] = field(default_factory=list, repr=False)
    _allowed: dict[tuple[str, tuple[str, ...], int], npt.NDArray[np.int64]] = field(
        default_factory=dict, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def pieces(self) -> list[str]:
        size = self.size()
        with self._lock:  # threads reading one model at once (llama.cpp's batching) share this
            if not self._pieces and self.saved is not None:
                self._pieces.extend(_read_pieces(self.saved, size))
            if len(self._pieces) < size:
                self._pieces.extend(self.piece(i) for i in range(len(self._pieces), size))
                if self.saved is not None:
                    _write_pieces(self.saved, self._pieces)
        return self._pieces

    def token_bytes(self, token_id: int) -> bytes:
        return self.raw(token_id) if self.raw is not None else self.piece(token_id).encode()

    def is_special(self, token_id: int) -> bool:
        return self.special(token_id) if self.special is not None else token_id in self.eos_ids

    def call_openers(self) -> npt.NDArray[np.int64]:
        """Tokens that open a call: `[`, optionally after white space."""
        return self.allowed_after("", ("",), opener=True)

    def allowed_after(
        self, name_so_far: str, names: tuple[str, ...], *, opener: bool = False
    ) -> npt.NDArray[np.int64]:
        """Tokens that keep `name_so_far` on the way to one of `names` followed by `(`."""
        pieces = self.pieces()
        key = (name_so_far if not opener else "\0[", names, len(pieces))
        if key not in self._allowed:
            if opener:
                ids = [i for i, p in enumerate(pieces) if p.strip() == "["]
            else:
                targets = tuple(n + "(" for n in names)
                ids = [i for i, p in enumerate(pieces) if p and _fits(name_so_far + p, targets)]
            self._allowed[key] = np.array(ids, dtype=np.int64)
        return self._allowed[key]


def _read_pieces(path: Path, size: int) -> list[str]:
    """The pieces saved in `path`, or [] unless it holds exactly `size` strings."""
    try:
        pieces = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(pieces, list) or len(pieces) != size:
        return []
    return pieces if all(isinstance(p, str) for p in pieces) else []


def _write_pieces(path: Path, pieces: list[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(pieces).encode())
    except OSError as exc:  # costs the next start 0.4 s, no more
        log.warning("could not save the token pieces to %s: %s", path, exc)


def _fits(text: str, targets: tuple[str, ...]) -> bool:
    return any(t.startswith(text) or text.startswith(t) for t in targets)
