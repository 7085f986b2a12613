"""The evals on the scripted model: each mode's records, summaries from the items alone, the
result files, concurrency and the progress line. The real model runs them in test_evals_model.py.
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from agent_server.errors import ConfigError
from agent_server.evals import math as math_eval
from agent_server.evals import qa as qa_eval
from agent_server.evals import report
from agent_server.evals.runner import Progress, read_jsonl, run_all
from agent_server.runtime import build_webgpt
from agent_server.settings import Settings
from tools.calculator import Calculator
from tools.search import Search
from tools.search_local import LocalSearchBackend

PNG = b"\x89PNG\r\n\x1a\n"
MATH = [
    {"id": "q1", "question": "A farm has 2 cows and buys 3. How many?", "answer": 5},
    {"id": "q2", "question": "4 boxes of 2 eggs. How many eggs?", "answer": 8.0},
]
DOCS = [
    ("d1", "Yushan", "Yushan is the highest mountain in Taiwan, at 3,952 m."),
    ("d2", "Alps", "The Alps are the highest mountain range in Europe."),
    ("d3", "Warsaw", "Warsaw is the capital and largest city of Poland."),
]
QA = [
    {"id": "a", "question": "What is the highest mountain in Taiwan?", "answers": ["Yushan"],
     "gold_doc_ids": ["d1"]},
    {"id": "b", "question": "What is the capital of Poland?", "answers": ["Warsaw", "Warszawa"],
     "gold_doc_ids": ["d3"]},
]  # fmt: skip


class FakeRetrieve:
    """Retrieve's place in the prompt, always finding the Yushan page."""

    name = "Retrieve"
    description = "Finds passages."
    example = '"query"'

    async def __call__(self, _argument: str) -> str:
        return "1. Yushan — Yushan is the highest mountain in Taiwan. (doc://d1)"


@pytest.fixture
def calculator():
    tool = Calculator()
    yield tool
    tool.close()


def test_math_modes_score_calls_results_and_answers(make_engine, calculator):
    engine, _ = make_engine(
        ["It has [Calculator(2+3)", " cows."],  # tools, q1: right, the result in the sentence
        ["[Calculator(4*2)", " The answer is 9."],  # tools, q2: a call, its result ignored
        "5.",  # no_tools, q1
        "I think 12 eggs.",  # no_tools, q2
        tools=[calculator],
    )
    items = asyncio.run(math_eval.evaluate(engine, MATH, math_eval.MathConfig(), progress=False))
    assert [(i["id"], i["mode"], i["predicted"], i["correct"]) for i in items] == [
        ("q1", "tools", 5, True),
        ("q2", "tools", 9, False),
        ("q1", "no_tools", 5, True),
        ("q2", "no_tools", 12, False),
    ]
    assert items[0]["text"] == "It has [Calculator(2+3) → 5] cows."
    assert items[0]["answer"] == "It has 5 cows."  # as shown: the result in the call's place
    assert items[0]["shown_correct"]
    assert items[1]["answer"] == "The answer is 9."  # a call opening the answer is removed
    assert [(i["calls"], i["well_formed"], i["results_used"]) for i in items] == [
        (1, 1, 1),
        (1, 1, 0),
        (0, 0, 0),
        (0, 0, 0),
    ]
    summary = math_eval.summarise(items)
    assert summary["tools"] == {
        "n": 2,
        "accuracy": 0.5,
        "shown_accuracy": 0.5,
        "sample_accuracy": 0.5,
        "call_rate": 1.0,
        "well_formed_rate": 1.0,
        "result_used_rate": 0.5,
        "mean_latency_s": pytest.approx((items[0]["latency_s"] + items[1]["latency_s"]) / 2),
        "p95_latency_s": max(items[0]["latency_s"], items[1]["latency_s"]),
    }
    assert summary["no_tools"]["accuracy"] == summary["no_tools"]["shown_accuracy"] == 0.5
    assert summary["no_tools"]["call_rate"] == 0.0
    assert summary["no_tools"]["well_formed_rate"] is None  # no calls: nothing to rate


def test_calls_that_break_the_grammar_or_the_calculator_are_not_well_formed(
    make_engine, calculator
):
    engine, _ = make_engine(
        "[Calculator(2+3 → 5] so 5.",  # malformed: never run
        ["[Calculator(4 boxes * 2 eggs)", " 8 eggs."],  # refused: words in the expression
        tools=[calculator],
    )
    config = math_eval.MathConfig(modes=("tools",))
    items = asyncio.run(math_eval.evaluate(engine, MATH, config, progress=False))
    assert [(i["calls"], i["well_formed"], i["correct"]) for i in items] == [
        (1, 0, True),
        (1, 0, True),
    ]
    assert "Error: " in items[1]["text"]
    summary = math_eval.summarise(items)["tools"]
    assert summary["well_formed_rate"] == 0.0
    assert summary["result_used_rate"] is None  # no result to use


def test_self_consistency_takes_the_majority_of_k_samples(make_engine, calculator):
    engine, backend = make_engine(
        "5.",  # greedy, q1
        "9.",  # greedy, q2
        "5.", "It is 6.", "5 cows.",  # q1 sampled: majority 5, right
        "8.", "7.", "7 eggs.",  # q2 sampled: majority 7, wrong
        tools=[calculator],
    )  # fmt: skip
    config = math_eval.MathConfig(modes=("tools",), samples=3)
    items = asyncio.run(math_eval.evaluate(engine, MATH, config, progress=False))
    assert math_eval.mode_names(config) == ["tools", "tools@k3"]
    voted = [i for i in items if i["mode"] == "tools@k3"]
    assert [(i["sample_predictions"], i["predicted"], i["correct"]) for i in voted] == [
        ([5, 6, 5], 5, True),
        ([8, 7, 7], 7, False),
    ]
    assert voted[0]["answer"] == "5."  # the first answer that gave the winning number
    summary = math_eval.summarise(items)
    assert summary["tools"]["accuracy"] == 0.5
    assert summary["tools@k3"]["accuracy"] == 0.5
    assert summary["tools@k3"]["sample_accuracy"] == pytest.approx(3 / 6)
    assert len(backend.sessions) == 2 + 2 * 3


def test_qa_modes_score_answers_recall_reading_and_citations(make_engine, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"doc_id": d, "title": t, "text": x}) + "\n" for d, t, x in DOCS)
    )
    search = Search(LocalSearchBackend(corpus))
    engine, _ = make_engine(
        "Yushan",  # no_tools
        "Krakow, I think.",
        ['[Retrieve("highest mountain Taiwan")', " It is Yushan."],  # retrieve
        ['[Retrieve("capital of Poland")', " Warsaw."],
        ['[Search("highest mountain in Taiwan")', " Yushan."],  # search
        ['[Search("capital of Poland")', " It is Warsaw."],
        "Yushan is the highest mountain in Taiwan [1].",  # webgpt: the answers from quotes
        "Warsaw [1][7].",
        tools=[FakeRetrieve(), search],
    )
    settings = Settings(search_backend="local", search_corpus=corpus)
    webgpt = build_webgpt(settings, engine)
    config = qa_eval.QAConfig()

    async def go():
        try:
            rankings = await asyncio.to_thread(qa_eval.indexes, engine, config.modes)
            return await qa_eval.evaluate(engine, webgpt, QA, config, rankings, progress=False)
        finally:
            await webgpt.aclose()

    items = asyncio.run(go())
    by = {(i["mode"], i["id"]): i for i in items}
    assert [(i["mode"], i["id"]) for i in items] == [
        (m, q["id"]) for m in qa_eval.MODES for q in QA
    ]
    assert by["no_tools", "a"]["exact_match"] and not by["no_tools", "b"]["contained"]
    assert by["retrieve", "a"]["contained"] and not by["retrieve", "a"]["exact_match"]
    assert (by["retrieve", "a"]["gold_read"], by["retrieve", "b"]["gold_read"]) == (True, False)
    assert by["search", "b"]["gold_read"] and by["search", "b"]["gold_rank"] == 1
    web = by["webgpt", "b"]
    assert web["answer"] == "Warsaw [1]."  # [7] named no quote: removed as it streamed
    assert web["exact_match"] and web["gold_in_quote"] and web["gold_read"]
    assert (web["markers"], web["valid_markers"]) == (1, 1)

    summary = qa_eval.summarise(items)
    assert summary["no_tools"]["exact_match"] == 0.5
    assert summary["no_tools"]["recall@1"] is None  # no ranking: not measured
    assert summary["no_tools"]["gold_read_rate"] is None
    assert summary["retrieve"]["call_rate"] == 1.0
    assert summary["retrieve"]["gold_read_rate"] == 0.5
    assert summary["search"]["recall@1"] == 1.0 and summary["webgpt"]["recall@5"] == 1.0
    assert summary["webgpt"]["contained"] == 1.0
    assert summary["webgpt"]["citation_validity"] == 1.0
    assert summary["webgpt"]["call_rate"] is None  # browsing actions are not tool calls


def test_result_files_hold_provenance_a_summary_its_items_a_table_and_a_png(tmp_path):
    items = [
        {"id": "a", "mode": "tools", "correct": True, "shown_correct": True, "samples": 1,
         "samples_correct": 1, "samples_with_calls": 1, "samples_with_results": 1, "calls": 1,
         "well_formed": 1, "results_used": 1, "latency_s": 2.0},
        {"id": "a", "mode": "no_tools", "correct": False, "shown_correct": False, "samples": 1,
         "samples_correct": 0, "samples_with_calls": 0, "samples_with_results": 0, "calls": 0,
         "well_formed": 0, "results_used": 0, "latency_s": 1.0},
    ]  # fmt: skip
    summary = math_eval.summarise(items)
    result = report.result_file("math", "scripted", "agent-server eval math", {}, summary, items, 3)
    written = report.write(tmp_path / "out", result, math_eval.COLUMNS, math_eval.BARS, "Math")
    saved = json.loads(written.json.read_text())
    assert saved["eval"] == "math" and saved["model"] == "scripted"
    assert saved["commit"] == "unknown" or len(saved["commit"]) == 40
    assert math_eval.summarise(saved["items"]) == saved["summary"]
    table = written.markdown.read_text()
    assert (
        "| tools | 1 | 100.0% | 100.0% | 100.0% | 100.0% | 100.0% | 100.0% | 2.00 | 2.00 |" in table
    )
    assert "| no_tools | 1 | 0.0% | 0.0% | 0.0% | 0.0% | – | – | 1.00 | 1.00 |" in table
    assert written.plot.read_bytes().startswith(PNG)
    # Given the commit read when the run started, that is the one recorded, not today's.
    started_at = ("0" * 40, True)
    recorded = report.result_file("math", "scripted", "c", {}, summary, items, 3, started_at)
    assert (recorded["commit"], recorded["dirty"]) == started_at


def test_workers_answer_concurrently_and_keep_the_order():
    running, most = 0, 0

    async def answer(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (5 - n))
        running -= 1
        return n * n

    stream = io.StringIO()
    progress = Progress(5, "test", stream)
    assert asyncio.run(run_all(range(5), answer, workers=3, progress=progress)) == [0, 1, 4, 9, 16]
    assert most == 3
    lines = stream.getvalue().splitlines()  # not a terminal: a line per tenth, and the last
    assert len(lines) == 5 and lines[-1].startswith("test 5/5 [####################] 100%")


def test_data_errors_name_the_file_and_line(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": 1, "question": "x", "answer": 2}\n\n{"id": 2, "question": "y"}\n')
    assert len(read_jsonl(data, limit=1, required=("answer",))) == 1
    with pytest.raises(ConfigError, match=r"q.jsonl:3: a record without answer"):
        read_jsonl(data, required=("answer",))
    data.write_text("not json\n")
    with pytest.raises(ConfigError, match=r"q.jsonl:1: not JSON"):
        read_jsonl(data)
    with pytest.raises(ConfigError, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")
