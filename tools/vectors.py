"""Where Retrieve's passage embeddings live: a matrix in memory (the default) or Qdrant.

    DenseIndex     the protocol: nearest(vector, depth) -> [(position, cosine)], best first
    MatrixIndex    every embedding in one array, saved beside the index (`embeddings.npy`)
    QdrantIndex    a Qdrant collection, shared by every replica that indexes the same passages
    qdrant_client  a client for `AGENT_QDRANT_URL`: http(s)://host:6333, a folder, or :memory:

A Qdrant collection is named by what it holds (the embedder and every passage's text), so
replicas with the same documents find it built and embed nothing; a replica whose documents
changed builds a new one. A point's id is its passage's position in the index. Two replicas
building one collection at once write the same points, which is harmless. Old collections are
left for an operator to drop (`agent-retrieve-*`): a replica may still be searching one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tools.embedder import Embedder, Progress, Vectors

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

COLLECTION_PREFIX = "agent-retrieve-"
UPSERT_BATCH = 256  # points per request: well under Qdrant's 32 MiB request limit at 384 floats


class DenseIndex(Protocol):
    def __len__(self) -> int: ...
    def nearest(self, vector: Vectors, depth: int) -> list[tuple[int, float]]: ...


class MatrixIndex:
    def __init__(self, embeddings: Vectors) -> None:
        self.embeddings = embeddings

    def __len__(self) -> int:
        return len(self.embeddings)

    def nearest(self, vector: Vectors, depth: int) -> list[tuple[int, float]]:
        scores = self.embeddings @ vector  # rows and query are unit vectors: cosine similarity
        top = np.arange(len(scores))
        if depth < len(scores):
            top = np.argpartition(-scores, depth - 1)[:depth]
        top = top[np.lexsort((top, -scores[top]))]  # ties in position order: reproducible
        return [(int(i), float(scores[i])) for i in top]


class QdrantIndex:
    def __init__(self, client: QdrantClient, collection: str, size: int) -> None:
        self.client = client
        self.collection = collection
        self._size = size

    def __len__(self) -> int:
        return self._size

    @classmethod
    def ensure(
        cls,
        client: QdrantClient,
        texts: Sequence[str],
        embedder: Embedder,
        progress: Progress | None = None,
    ) -> QdrantIndex:
        """The collection for `texts`, embedded and written now unless it is already whole."""
        from qdrant_client import models

        index = cls(client, collection_name(texts, embedder), len(texts))
        if index.is_whole():
            return index
        if not client.collection_exists(index.collection):
            dimension = embedder.embed(["dimension"]).shape[1]
            vectors = models.VectorParams(size=int(dimension), distance=models.Distance.COSINE)
            try:
                client.create_collection(index.collection, vectors_config=vectors)
            except Exception:  # another replica created it meanwhile: any other cause recurs below
                if not client.collection_exists(index.collection):
                    raise
        for start in range(0, len(texts), UPSERT_BATCH):
            batch = texts[start : start + UPSERT_BATCH]
            points = models.Batch(
                ids=list(range(start, start + len(batch))),
                vectors=embedder.embed(batch).tolist(),
            )
            client.upsert(index.collection, points=points, wait=True)
            if progress is not None:
                progress(start + len(batch), len(texts))
        return index

    def is_whole(self) -> bool:
        """The collection exists and holds one point per passage."""
        if not self.client.collection_exists(self.collection):
            return False
        return int(self.client.count(self.collection, exact=True).count) == self._size

    def nearest(self, vector: Vectors, depth: int) -> list[tuple[int, float]]:
        found = self.client.query_points(
            self.collection, query=vector.tolist(), limit=depth, with_payload=False
        )
        return [(int(p.id), float(p.score)) for p in found.points]


def collection_name(texts: Sequence[str], embedder: Embedder) -> str:
    digest = hashlib.sha256(embedder.name.encode())
    for text in texts:
        digest.update(len(text).to_bytes(8, "little"))
        digest.update(text.encode())
    return COLLECTION_PREFIX + digest.hexdigest()[:24]


def qdrant_client(url: str, api_key: str | None = None, timeout_s: int = 30) -> QdrantClient:
    """http(s)://host:6333 for a server; `:memory:` or a folder for Qdrant's embedded mode."""
    from qdrant_client import QdrantClient

    options: dict[str, Any] = {}
    if url == ":memory:":
        options["location"] = url
    elif url.startswith(("http://", "https://")):
        options.update(url=url, api_key=api_key or None, timeout=timeout_s)
    else:
        options["path"] = url
    return QdrantClient(**options)
