"""A GGUF's vocabulary through llama.cpp: text to tokens and back, pieces, stop tokens and the
chat template. The llama.cpp backend reads it from its loaded model; the remote backend loads
the vocabulary alone (`vocab_only`, a few MB of memory), to speak tokens with a server that runs
the same GGUF.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agent_server.backends.base import Vocabulary
from agent_server.errors import ModelNotAvailable
from agent_server.models import ModelSource


def import_llama() -> Any:
    """llama_cpp, its log quiet, or `ModelNotAvailable` saying how to install it."""
    try:
        import llama_cpp
        from llama_cpp._logger import set_verbose
    except ImportError as exc:
        raise ModelNotAvailable(
            "the llama.cpp backends need llama-cpp-python (`make install` builds it)"
        ) from exc
    set_verbose(False)  # llama.cpp's own log lines only for errors
    return llama_cpp


def load_model(source: ModelSource, *, vocab_only: bool = False) -> Any:
    """The GGUF of `source` as an `_internals.LlamaModel` (freed with its `close`)."""
    if not source.gguf_file:
        raise ModelNotAvailable(f"llama.cpp needs a GGUF file; {source.name!r} is a folder")
    llama = import_llama()
    from llama_cpp import _internals

    path = os.path.join(source.location, source.gguf_file)
    params = llama.llama_model_default_params()
    params.vocab_only = vocab_only
    try:
        # verbose=True only skips the library's stdout/stderr redirection; import_llama has
        # already silenced llama.cpp's log.
        return _internals.LlamaModel(path_model=path, params=params, verbose=True)
    except ValueError as exc:
        raise ModelNotAvailable(f"llama.cpp cannot load {path}: {exc}") from exc


class GgufTokenizer:
    def __init__(self, model: Any, saved_pieces: Path | None = None) -> None:
        self._llama = import_llama()
        self._model = model
        self._vocab = model.vocab
        self.size = int(self._llama.llama_vocab_n_tokens(self._vocab))
        eog = self._llama.llama_vocab_is_eog
        eos = frozenset(i for i in range(self.size) if eog(self._vocab, i))
        self.vocab = Vocabulary(
            size=lambda: self.size,
            piece=self.piece,
            eos_ids=eos,
            raw=lambda i: self.bytes([i], special=True),
            special=self._is_special,
            saved=saved_pieces,
        )
        self._template = _chat_template(self._llama.llama_model_chat_template(model.model, None))
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:  # the C side would read freed memory
            raise ModelNotAvailable("the llama.cpp model has been closed")

    def _is_special(self, token_id: int) -> bool:
        """A control token, or one added to look like one (`<tool_call>`): llguidance's rule."""
        self._check_open()
        llama = self._llama
        attr = int(llama.llama_vocab_get_attr(self._vocab, token_id))
        if attr & llama.LLAMA_TOKEN_ATTR_CONTROL:
            return True
        markup = self.bytes([token_id], special=True)
        user_defined = attr & llama.LLAMA_TOKEN_ATTR_USER_DEFINED
        return bool(user_defined) and markup.startswith(b"<") and markup.endswith(b">")

    def piece(self, token_id: int) -> str:
        """One token's text; a byte fragment of a longer character is U+FFFD."""
        return self.bytes([token_id], special=False).decode("utf-8", errors="replace")

    def bytes(self, token_ids: Sequence[int], *, special: bool) -> bytes:
        """The tokens' bytes; with `special`, special tokens as their markup (`<|im_end|>`)."""
        self._check_open()
        size = 64
        buffer = ctypes.create_string_buffer(size)
        out = bytearray()
        to_piece = self._llama.llama_token_to_piece
        for token in token_ids:
            n = to_piece(self._vocab, token, buffer, size, 0, special)
            if n > size:  # a piece longer than the buffer: ask again with room for it
                size, buffer = n, ctypes.create_string_buffer(n)
                n = to_piece(self._vocab, token, buffer, size, 0, special)
            out += buffer.raw[: max(n, 0)]
        return bytes(out)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, special-token markup honoured."""
        self._check_open()
        data = text.encode("utf-8")
        room = len(data) + 16
        tokens = (self._llama.llama_token * room)()
        n = self._llama.llama_tokenize(self._vocab, data, len(data), tokens, room, False, True)
        if n < 0:  # pragma: no cover - a token per byte always fits
            raise RuntimeError(f"llama.cpp could not tokenize {len(data)} bytes")
        return list(tokens[:n])

    def decode(self, token_ids: Sequence[int]) -> str:
        # Special tokens (`<|im_end|>`) print as nothing, as transformers' skip_special_tokens.
        return self.bytes(token_ids, special=False).decode("utf-8", errors="replace")

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        if self._template is None:
            return None
        messages = [{"role": "user", "content": user}]
        if system is not None:  # else the template's own system prompt, if it has one
            messages.insert(0, {"role": "system", "content": system})
        return self._template.render(messages=messages, add_generation_prompt=True)


def _chat_template(raw: bytes | None) -> jinja2.Template | None:
    """The GGUF's own chat template, rendered as transformers renders it (sandboxed Jinja)."""
    if not raw:
        return None

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    return env.from_string(raw.decode("utf-8"))
