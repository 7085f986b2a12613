"""Model backends behind one protocol; `load_backend` picks one from settings.

Heavy imports (torch, transformers, llama_cpp) happen here lazily, only when a real model is
asked for.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent_server.backends.base import Backend, Logits, Session, Vocabulary
from agent_server.errors import ModelNotAvailable
from agent_server.models import ModelSource, resolve

if TYPE_CHECKING:
    from agent_server.backends.remote import RemoteConfig

__all__ = ["Backend", "BackendKind", "Logits", "Session", "Vocabulary", "load_backend"]

BackendKind = Literal["auto", "llamacpp", "transformers", "remote"]


def load_backend(
    model: str,
    cache_dir: Path,
    *,
    kind: BackendKind = "auto",
    dtype: str = "bfloat16",
    threads: int = 0,
    context_tokens: int = 16_384,
    remote: RemoteConfig | None = None,
) -> tuple[Backend, ModelSource]:
    """Resolve `model` and load it; return the backend and where the model came from.

    "auto" takes the inference server when `remote` names one; else llama.cpp, the faster on a
    CPU (benchmarks/), when it is installed and the model is a GGUF; else transformers, which
    also reads model folders. The remote backend loads the model's vocabulary alone.
    """
    source = resolve(model, cache_dir)
    if kind == "auto" and remote is not None:
        kind = "remote"
    if kind == "remote":
        if remote is None:
            raise ModelNotAvailable("the remote backend needs a server URL (AGENT_REMOTE_URL)")
        from agent_server.backends.gguf import GgufTokenizer, load_model
        from agent_server.backends.remote import RemoteBackend

        tokenizer = GgufTokenizer(load_model(source, vocab_only=True))
        backend = RemoteBackend(tokenizer, source.name, remote)
        try:
            backend.check()
        except ModelNotAvailable:
            backend.close()
            raise
        return backend, source
    if kind == "auto":
        llama_ready = importlib.util.find_spec("llama_cpp") is not None
        kind = "llamacpp" if llama_ready and source.gguf_file else "transformers"
    if kind == "llamacpp":
        if not source.gguf_file:
            raise ModelNotAvailable(f"the llama.cpp backend needs a GGUF model, not {model!r}")
        from agent_server.backends.llamacpp import LlamaCppBackend, LlamaCppConfig

        config = LlamaCppConfig(context_tokens=context_tokens, threads=threads)
        return LlamaCppBackend.load(source, config, cache_dir), source
    from agent_server.backends.transformers import TransformersBackend

    return TransformersBackend.load(source, cache_dir, dtype=dtype, threads=threads), source
