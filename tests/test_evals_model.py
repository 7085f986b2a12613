"""Both evals end to end on the real default model, as a user runs them: `agent-server eval math`
and `agent-server eval qa` on two questions each. The result file's summary must be what its
per-item log says, recomputed here by hand.

QA runs over a small slice of the SQuAD corpus (the questions' gold paragraphs and 60 others) so
that Retrieve's embeddings take seconds, not the full corpus's minute.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[1] / "data"
PNG = b"\x89PNG\r\n\x1a\n"


def run_eval(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "agent_server.cli", "eval", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def by_mode(result: dict) -> dict[str, list[dict]]:
    modes: dict[str, list[dict]] = {}
    for item in result["items"]:
        modes.setdefault(item["mode"], []).append(item)
    return modes


def nearest_rank_p95(values: list[float]) -> float:
    return sorted(values)[math.ceil(0.95 * len(values)) - 1]


def mcnemar_p(gained: int, lost: int) -> float:
    n = gained + lost
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n if n else 0.5
    return min(1.0, 2 * tail)


def test_eval_math_and_qa_write_results_whose_summary_is_their_items(tmp_path, monkeypatch):
    out = tmp_path / "out"
    modes = ["cot", "calculator", "program@k2", "consensus"]
    done = run_eval("math", "--data", str(DATA / "math_svamp_dev.jsonl"), "--limit", "2",
                    "--modes", ",".join(modes), "--out", str(out))  # fmt: skip
    result = json.loads((out / "math.json").read_text())
    assert result["eval"] == "math" and result["model"] == "qwen2.5-coder-1.5b"
    assert result["settings"]["limit"] == 2 and result["command"].startswith("agent-server eval")
    assert len(result["commit"]) == 40 or result["commit"] == "unknown"
    items = by_mode(result)
    assert list(items) == modes == list(result["summary"])
    cot = {r["id"]: r["correct"] for r in items["cot"]}
    for mode, rows in items.items():
        summary = result["summary"][mode]
        assert [r["id"] for r in rows] == ["chal-478", "chal-809"]
        assert summary["n"] == 2
        assert summary["accuracy"] == sum(r["correct"] for r in rows) / 2
        gained = sum(r["correct"] and not cot[r["id"]] for r in rows)
        lost = sum(cot[r["id"]] and not r["correct"] for r in rows)
        assert summary["p_vs_cot"] == (None if mode == "cot" else mcnemar_p(gained, lost))
        assert summary["call_rate"] == sum(r["calls"] > 0 for r in rows) / 2
        calls = sum(r["calls"] for r in rows)
        expected = sum(r["well_formed"] for r in rows) / calls if calls else None
        assert summary["well_formed_rate"] == expected
        latencies = sorted(r["latency_s"] for r in rows)
        assert summary["median_latency_s"] == latencies[0]  # nearest rank of two
        assert summary["p95_latency_s"] == nearest_rank_p95(latencies)
        assert summary["mean_tokens"] == sum(r["tokens"] for r in rows) / 2
        voted = sum(r["samples"] for r in rows)
        assert summary["sample_accuracy"] == sum(r["samples_correct"] for r in rows) / voted
        for row in rows:
            assert row["strategy"] == mode.split("@")[0]
            assert row["correct"] == (
                row["predicted"] is not None and abs(row["predicted"] - row["gold"]) < 1e-6
            )
    assert all(r["calls"] == 0 for r in items["cot"])
    assert all(len(r["votes"]) >= 1 and r["samples"] == 2 for r in items["program@k2"])
    for row in items["consensus"]:  # its members, and cot only when they disagreed
        voters = sorted(s for v in row["votes"] for s in v["strategies"])
        agreed = len(row["votes"]) == 1
        assert voters == (["program", "tir"] if agreed else ["cot", "program", "tir"])
    assert "| cot | 2 |" in done.stdout and str(out / "math.png") in done.stdout
    assert (out / "math.png").read_bytes().startswith(PNG)
    assert (out / "math.md").read_text().count("\n| ") == 1 + len(modes)  # header and modes

    questions = [
        json.loads(line)
        for line in (DATA / "squad_questions_dev.jsonl").read_text(encoding="utf-8").splitlines()
    ][:2]
    gold = {d for q in questions for d in q["gold_doc_ids"]}
    lines = (DATA / "squad_passages.jsonl").read_text(encoding="utf-8").splitlines()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            line for i, line in enumerate(lines) if i < 60 or json.loads(line)["doc_id"] in gold
        )
        + "\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("AGENT_INDEX_DIR", str(tmp_path / "index"))  # not the user's cache
    done = run_eval("qa", "--data", str(DATA / "squad_questions_dev.jsonl"), "--corpus",
                    str(corpus), "--limit", "2", "--out", str(out))  # fmt: skip
    result = json.loads((out / "qa.json").read_text())
    items = by_mode(result)
    assert list(items) == ["no_tools", "retrieve", "search", "webgpt"] == list(result["summary"])
    for mode, rows in items.items():
        summary = result["summary"][mode]
        assert [r["id"] for r in rows] == [q["id"] for q in questions]
        assert summary["exact_match"] == sum(r["exact_match"] for r in rows) / 2
        assert summary["contained"] == sum(r["contained"] for r in rows) / 2
        for k in (1, 3, 5):
            ranked = [r["gold_rank"] for r in rows if r["ranking"] is not None]
            hits = sum(rank is not None and rank <= k for rank in ranked)
            assert summary[f"recall@{k}"] == (hits / len(ranked) if ranked else None)
    assert result["summary"]["no_tools"]["recall@1"] is None
    assert {r["ranking"] for r in items["retrieve"]} == {"hybrid"}
    assert {r["ranking"] for r in items["search"] + items["webgpt"]} == {"bm25"}
    web = items["webgpt"]
    markers = sum(r["markers"] for r in web)
    validity = result["summary"]["webgpt"]["citation_validity"]
    assert validity == (sum(r["valid_markers"] for r in web) / markers if markers else None)
    assert markers == 0 or validity == 1.0  # markers naming no quote never reach the answer
    assert (out / "qa.png").read_bytes().startswith(PNG)
