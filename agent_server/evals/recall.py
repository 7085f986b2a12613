"""Retrieval recall@k: does a gold document rank among the top k documents for a question?

A question is a hit at k when one of its gold documents (SQuAD paragraphs, `gold_doc_ids`) is
among the top k distinct documents, whichever of their passages matched. `gold_rank` gives the
per-question figure the eval logs, `recall_at_k` the share over questions
(benchmarks/recall.py prints it for each ranking mode).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # an annotation only: importing tools.retrieval pulls in numpy and bm25s
    from tools.retrieval import HybridIndex, Mode


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    gold_doc_ids: frozenset[str]


def load_questions(path: Path) -> list[Question]:
    """The questions of a JSONL file of `{id, question, gold_doc_ids, …}`."""
    with path.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return [Question(r["id"], r["question"], frozenset(r["gold_doc_ids"])) for r in records]


def gold_rank(
    index: HybridIndex, query: str, gold: Collection[str], mode: Mode, depth: int
) -> int | None:
    """The 1-based rank of the first gold document among the top `depth` documents, or None."""
    found = index.search(query, depth, mode, per_document=True)
    ranked = [hit.passage.doc_id for hit in found]
    return next((rank for rank, doc_id in enumerate(ranked, 1) if doc_id in gold), None)


def recall_at_k(
    index: HybridIndex, questions: Sequence[Question], mode: Mode, ks: Sequence[int]
) -> dict[int, float]:
    """The share of questions with a gold document among the top k documents, for each k."""
    ranks = [gold_rank(index, q.question, q.gold_doc_ids, mode, max(ks)) for q in questions]
    return {k: sum(r is not None and r <= k for r in ranks) / len(questions) for k in ks}
