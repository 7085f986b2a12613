"""The transformers backend: any causal LM that transformers loads, on the CPU.

A GGUF is dequantized by transformers on first load (15–50 s), then saved as an ordinary model
folder under the cache directory, so later starts take a second or two. A session owns a
`DynamicCache`; `feed` runs only the new tokens through the model and asks for the last
position's logits alone (`logits_to_keep=1`), which spares a vocabulary-sized matmul per
prompt token. This is the only module that imports torch.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from agent_server.backends.base import Logits, Vocabulary
from agent_server.errors import ModelNotAvailable
from agent_server.models import ModelSource

log = logging.getLogger(__name__)
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


class TransformersBackend:
    # Sessions can be forked (their KV cache copied), so a prompt's shared start is read once.
    prefix_caching = True
    kind = "transformers"
    # Steps of concurrent answers take turns on one thread: two at once let a short answer pass
    # a long one; more only slow each one down.
    parallel = 2
    batching = False
    state_key = None  # sessions are not saved to disk: `restore` is never asked

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self.name = name
        self._cache_argument = _cache_argument(model)
        eos = {tokenizer.eos_token_id, *_as_list(model.generation_config.eos_token_id)}
        special = frozenset(
            i for i, token in tokenizer.added_tokens_decoder.items() if token.special
        )
        self.vocab = Vocabulary(
            size=lambda: int(model.get_output_embeddings().weight.shape[0]),
            piece=self._piece,
            eos_ids=frozenset(i for i in eos if i is not None),
            raw=_token_bytes(tokenizer),
            special=special.__contains__,
        )

    @classmethod
    def load(
        cls, source: ModelSource, cache_dir: Path, dtype: str = "bfloat16", threads: int = 0
    ) -> TransformersBackend:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if threads > 0:
            torch.set_num_threads(threads)
        torch_dtype = DTYPES[dtype]
        location, gguf = source.location, source.gguf_file
        if gguf and source.cache_key:
            converted = cache_dir / "converted" / f"{source.cache_key}-{dtype}"
            if not (converted / "config.json").is_file():
                _convert(source, converted, torch_dtype)
            location, gguf = str(converted), None
        try:
            extra = {"gguf_file": gguf} if gguf else {}
            tokenizer = AutoTokenizer.from_pretrained(location, **extra)
            model: Any = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, **extra)
        except (OSError, ValueError) as exc:
            raise ModelNotAvailable(f"cannot load model {source.name!r}: {exc}") from exc
        model.eval()
        return cls(model, tokenizer, source.name)

    @property
    def model(self) -> Any:
        """The transformers model itself, for training (`toolformer finetune`)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def close(self) -> None:
        """Nothing to free by hand: torch releases the weights with the last reference."""

    def _piece(self, token_id: int) -> str:
        return str(self._tokenizer.decode([token_id]))

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(token_ids), skip_special_tokens=True))

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        if not self._tokenizer.chat_template:
            return None
        messages = [{"role": "user", "content": user}]
        if system is not None:  # else the template's own system prompt, if it has one
            messages.insert(0, {"role": "system", "content": system})
        text = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(text)

    def new_session(self) -> TransformersSession:
        return TransformersSession(self._model, self._cache_argument)

    def restore(self, state: bytes, length: int) -> None:
        """Never asked: `state_key` is None, so no session of this backend is saved."""


class TransformersSession:
    def __init__(self, model: Any, cache_argument: str) -> None:
        self._model = model
        self._cache_argument = cache_argument
        self._cache = DynamicCache()
        self._length = 0

    @property
    def length(self) -> int:
        return self._length

    def fork(self) -> TransformersSession:
        """A session that has read the same tokens, with a copy of this one's KV cache."""
        twin = TransformersSession(self._model, self._cache_argument)
        twin._cache = copy.deepcopy(self._cache)
        twin._length = self._length
        return twin

    def save(self) -> None:
        return None

    def feed(self, token_ids: Sequence[int]) -> Logits:
        ids = torch.tensor([list(token_ids)], dtype=torch.long)
        with torch.inference_mode():
            cache = {self._cache_argument: self._cache}
            out = self._model(input_ids=ids, use_cache=True, logits_to_keep=1, **cache)
        self._length += len(token_ids)
        logits: Logits = out.logits[0, -1].float().numpy()
        return logits


def _cache_argument(model: Any) -> str:
    """The name `forward` takes the KV cache by: transformers 5.24 renamed `past_key_values`
    to `cache` and warns on the old name, and the install allows either release."""
    parameters = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _convert(source: ModelSource, target: Path, dtype: torch.dtype) -> None:
    """Dequantize a GGUF once and keep it as a plain model folder (written atomically)."""
    log.info("converting %s to a %s model folder at %s (once)", source.gguf_file, dtype, target)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    try:
        gguf = {"gguf_file": source.gguf_file}
        tokenizer = AutoTokenizer.from_pretrained(source.location, **gguf)
        model: Any = AutoModelForCausalLM.from_pretrained(source.location, dtype=dtype, **gguf)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(f"cannot read GGUF {source.gguf_file!r}: {exc}") from exc
    # save_pretrained refuses a model that still looks GGUF-quantized, and a saved
    # quantization_config would make the next load treat plain weights as GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


def _token_bytes(tokenizer: Any) -> Callable[[int], bytes]:
    """One token's bytes, from its vocabulary entry: byte-level BPE (GPT-2's, Qwen's, SmolLM's)
    spells each byte as one printable character; SentencePiece writes a space as `▁` and a
    byte with no piece of its own as `<0xNN>`. An added token is its own text."""
    decoder = {char: byte for byte, char in _byte_level_alphabet().items()}
    added = {i: token.content for i, token in tokenizer.added_tokens_decoder.items()}

    def raw(token_id: int) -> bytes:
        if token_id in added:
            return str(added[token_id]).encode()
        token = tokenizer.convert_ids_to_tokens(token_id)
        if token is None:
            return b""  # an id past the tokenizer's table (the model's padded embedding rows)
        if all(char in decoder for char in token):
            return bytes(decoder[char] for char in token)
        if byte := re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", token):
            return bytes([int(byte.group(1), 16)])
        return str(token).replace("\u2581", " ").encode()

    return raw


def _byte_level_alphabet() -> dict[int, str]:
    """GPT-2's table of byte → printable character (its `bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table
