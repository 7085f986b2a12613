"""Model backends behind one protocol; `load_backend` picks one from settings.

Heavy imports (torch, transformers) happen here lazily, only when a real model is asked for.
"""

from __future__ import annotations

from pathlib import Path

from agent_server.backends.base import Backend, Logits, Session, Vocabulary
from agent_server.models import ModelSource, resolve

__all__ = ["Backend", "Logits", "Session", "Vocabulary", "load_backend"]


def load_backend(
    model: str, cache_dir: Path, *, dtype: str = "bfloat16", threads: int = 0
) -> tuple[Backend, ModelSource]:
    """Resolve `model` and load it with transformers; return the backend and where it came from."""
    source = resolve(model, cache_dir)
    from agent_server.backends.transformers import TransformersBackend

    return TransformersBackend.load(source, cache_dir, dtype=dtype, threads=threads), source
