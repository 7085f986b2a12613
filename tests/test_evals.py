"""The evals on the scripted model: each mode's records, summaries from the items alone, the
result files, concurrency and the progress line. The real model runs them in test_evals_model.py.
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from doubles import PrintingPython

from agent_server.errors import BadRequest, ConfigError
from agent_server.evals import math as math_eval
from agent_server.evals import qa as qa_eval
from agent_server.evals import report
from agent_server.evals.runner import Journal, Progress, read_jsonl, run_all
from agent_server.runtime import build_webgpt
from agent_server.settings import Settings
from tools.base import NoWarmUp
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


class FakeRetrieve(NoWarmUp):
    """Retrieve's place in the prompt, always finding the Yushan page."""

    name = "Retrieve"
    description = "Finds passages."
    example = '"query"'
    parameters = None

    async def __call__(self, _argument: str) -> str:
        return "1. Yushan — Yushan is the highest mountain in Taiwan. (doc://d1)"


@pytest.fixture
def calculator():
    tool = Calculator()
    yield tool
    tool.close()


def test_math_modes_answer_in_each_strategy_and_compare_with_cot(make_engine, calculator):
    python = PrintingPython()
    engine, backend = make_engine(
        r"2 + 3 = 5. \boxed{5}",  # cot, q1: right
        r"4 * 2 = 6, so \boxed{6}.",  # cot, q2: wrong
        ["It has [Calculator(2+3)", " cows."],  # toolformer, q1: the result in the sentence
        ["[Calculator(4*2)", " The answer is 9."],  # toolformer, q2: the result ignored
        ["```python\nprint(5)\n```", "\nIt has 5 cows."],  # program, q1
        ["```python\nprint(8)\n```", "\nThere are 9 eggs."],  # program, q2: caught, 8 stands
        tools=[calculator, python],
    )
    config = math_eval.MathConfig(modes=("cot", "toolformer", "program"))
    items = asyncio.run(math_eval.evaluate(engine, MATH, config, progress=False))
    assert [(i["id"], i["mode"], i["predicted"], i["correct"]) for i in items] == [
        ("q1", "cot", 5, True),
        ("q2", "cot", 6, False),
        ("q1", "toolformer", 5, True),
        ("q2", "toolformer", 9, False),
        ("q1", "program", 5, True),
        ("q2", "program", 8, True),
    ]
    assert items[2]["answer"] == "It has 5 cows." and items[2]["strategy"] == "toolformer"
    assert [(i["calls"], i["well_formed"]) for i in items] == [
        (0, 0), (0, 0), (1, 1), (1, 1), (1, 1), (1, 1)
    ]  # fmt: skip
    assert items[5]["checks"] == [{"kind": "stated_answer_differs", "stated": "9", "computed": "8"}]
    assert "Calculator" in backend.prompts[2] and "Python" not in backend.prompts[2]
    summary = math_eval.summarise(items)
    assert summary["cot"]["p_vs_cot"] is None
    assert summary["program"]["accuracy"] == 1.0
    assert (summary["program"]["gained_vs_cot"], summary["program"]["lost_vs_cot"]) == (1, 0)
    assert summary["program"]["p_vs_cot"] == 1.0  # one discordant pair proves nothing
    assert summary["toolformer"]["gained_vs_cot"] == summary["toolformer"]["lost_vs_cot"] == 0
    latencies = [i["latency_s"] for i in items[4:]]
    assert summary["program"]["median_latency_s"] == min(latencies)  # nearest rank of two
    assert summary["program"]["p95_latency_s"] == max(latencies)
    assert summary["program"]["check_rate"] == 0.5
    assert summary["cot"]["well_formed_rate"] is None  # no calls: nothing to rate


def test_a_k_mode_samples_in_one_answer_and_votes(make_engine):
    engine, _ = make_engine(
        "A: 5.", "A: 6.", "A: 5 cows.",  # q1: majority 5, right
        "A: 8.", "A: 7.", "A: 7 eggs.",  # q2: majority 7, wrong
        tools=[PrintingPython()],
    )  # fmt: skip
    config = math_eval.MathConfig(modes=("toolformer@k3",))
    engine.tools = {}  # the toolformer mode's Calculator is not needed for sentences
    with pytest.raises(BadRequest, match="unknown tools"):
        asyncio.run(math_eval.evaluate(engine, MATH, config, progress=False))
    config = math_eval.MathConfig(modes=("cot@k3",))
    items = asyncio.run(math_eval.evaluate(engine, MATH, config, progress=False))
    assert [(i["predicted"], i["correct"], i["samples_correct"]) for i in items] == [
        (5, True, 2),
        (7, False, 1),  # one sample said 8, outvoted
    ]
    assert [v["samples"] for v in items[0]["votes"]] == [[0, 2], [1]]
    assert math_eval.summarise(items)["cot@k3"]["sample_accuracy"] == 0.5


def test_a_stopped_run_resumes_from_its_journal_asking_only_what_is_missing(make_engine, tmp_path):
    path = tmp_path / "math.items.jsonl"
    header = {"model": "m", "data": "d.jsonl", "seed": 0}
    config = math_eval.MathConfig(modes=("cot",))
    engine, _ = make_engine(r"\boxed{5}")
    journal = Journal(path, header, resume=False, commit="a" * 40)
    asyncio.run(math_eval.evaluate(engine, MATH[:1], config, progress=False, journal=journal))
    journal.close()
    with path.open("a") as handle:
        handle.write('{"id": "q2", "mo')  # the run stopped while writing

    engine, backend = make_engine(r"\boxed{8}")
    journal = Journal(path, header, resume=True, commit="b" * 40)
    items = asyncio.run(math_eval.evaluate(engine, MATH, config, progress=False, journal=journal))
    journal.close()
    assert [(i["id"], i["predicted"], "commit" in i) for i in items] == [
        ("q1", 5, False),
        ("q2", 8, False),
    ]
    assert len(backend.prompts) == 1  # q1 was not asked again
    assert journal.commits() == ["a" * 40, "b" * 40]
    again = Journal(path, header, resume=True, commit="b" * 40)
    again.close()
    assert [(k, i["commit"][0]) for k, i in again.resumed.items()] == [
        (("cot", "q1"), "a"),
        (("cot", "q2"), "b"),
    ]
    with pytest.raises(ConfigError, match="other seed: run without --resume"):
        Journal(path, {**header, "seed": 1}, resume=True, commit="c" * 40)
    Journal(path, header, resume=False, commit="c" * 40).close()  # starts again
    assert path.read_text().splitlines() == [json.dumps({"journal": header})]


@pytest.mark.parametrize(
    ("mode", "error"),
    [("magic", "the strategy must be one of"), ("cot@k1", "@k takes 2 to 16"), ("cot@kx", "@k")],
)
def test_bad_modes_are_refused_by_name(mode, error):
    with pytest.raises(ConfigError, match=error):
        math_eval.parse_mode(mode)
    assert math_eval.parse_mode("program@k5") == math_eval.Mode("program@k5", "program", 5)


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
    def item(mode, correct, latency):
        return {"id": "a", "mode": mode, "correct": correct, "samples": 1,
                "samples_correct": int(correct), "calls": int(mode != "cot"),
                "well_formed": int(mode != "cot"), "checks": [], "tokens": 10,
                "latency_s": latency}  # fmt: skip

    items = [item("cot", False, 1.0), item("program", True, 2.0)]
    summary = math_eval.summarise(items)
    result = report.result_file("math", "scripted", "agent-server eval math", {}, summary, items, 3)
    written = report.write(tmp_path / "out", result, math_eval.COLUMNS, math_eval.BARS, "Math")
    saved = json.loads(written.json.read_text())
    assert saved["eval"] == "math" and saved["model"] == "scripted"
    assert saved["commit"] == "unknown" or len(saved["commit"]) == 40
    assert math_eval.summarise(saved["items"]) == saved["summary"]
    table = written.markdown.read_text()
    assert "| cot | 1 | 0.0% | – | 1.00 | 1.00 | 10 | 0.0% | – | 0.0% | 0.0% |" in table
    assert (
        "| program | 1 | 100.0% | 1.0000 | 2.00 | 2.00 | 10 | 100.0% | 100.0% | 100.0% | 0.0% |"
        in table
    )
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
