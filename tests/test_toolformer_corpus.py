"""`agent-server toolformer corpus`: worked word problems from reasoning-gym, run as a user would.

The generators' solutions need no model: checked, the scoring residue is gone, solutions are short
and on one line, the same seed gives the same texts, and no text is a question of the math
evaluation set. `--voice model` runs the real default model through the command; which of its
answers are kept is also checked on a stand-in engine (a unit test) whose answers are set.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from cli_run import cli

from agent_server.core.grammar import Call, parse, strip_calls
from agent_server.core.numbers import last_number, same_number
from agent_server.core.prompts import Prompt
from agent_server.toolformer.corpus import (
    INSTRUCTION,
    gsm8k_problems,
    human_calls,
    own_answers,
    plain,
    text,
    worked_problems,
)
from agent_server.toolformer.word_problems import one_step_problems

SVAMP = Path(__file__).resolve().parents[1] / "data" / "math_svamp_dev.jsonl"


def test_a_text_is_the_problem_and_its_solution_without_the_scoring_residue():
    question = "Ann has 3 pens and buys 4. How many?" + INSTRUCTION
    solution = "She has 3+4=7 pens\nSo 7*2 = 14.\n#### 7"
    assert text(question, solution) == (
        "Question: Ann has 3 pens and buys 4. How many?\nAnswer: She has 3+4=7 pens. So 7*2 = 14."
    )


def test_the_same_seed_gives_the_same_worked_problems():
    first = list(worked_problems(20, seed=3))
    assert first == list(worked_problems(20, seed=3))
    assert [r["text"] for r in first] != [r["text"] for r in worked_problems(20, seed=4)]
    assert len({r["id"] for r in first}) == 20
    for record in first:
        question, _, answer = record["text"].partition("\nAnswer: ")
        assert question.startswith("Question: ") and answer
        assert "####" not in record["text"] and "final answer" not in record["text"]
        assert any(c.isdigit() for c in answer)  # a worked solution computes
        assert "\n" not in answer


def test_the_command_writes_the_corpus_and_none_of_it_is_an_eval_question(tmp_path):
    out = tmp_path / "corpus.jsonl"
    done = cli(
        "toolformer", "corpus", "--source", "gsm_symbolic", "--size", "300", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert f"300 texts (gsm_symbolic, seed 0): {out}" in done.stdout
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert len(texts) == 300
    questions = {json.loads(line)["question"].strip() for line in SVAMP.read_text().splitlines()}
    asked = {t.partition("\nAnswer: ")[0].removeprefix("Question: ") for t in texts}
    assert not asked & questions


def test_a_size_below_one_is_refused_by_name(tmp_path):
    done = cli("toolformer", "corpus", "--size", "0", "--out", str(tmp_path / "c.jsonl"))
    assert done.returncode != 0
    assert "--size and --workers must be at least 1" in done.stderr
    assert not (tmp_path / "c.jsonl").exists()


def test_only_right_one_line_answers_are_kept_as_the_model_wrote_them(make_engine):
    problems = [
        {"id": "a", "question": "Ann has 3 pens and buys 4. How many?", "answer": 7.0},
        {"id": "b", "question": "Bo has 5 and loses 2. How many?", "answer": 3.0},
        {"id": "c", "question": "Cy has 2 bags of 6. How many?", "answer": 12.0},
        {"id": "d", "question": "Di has 9 and gives 4. How many?", "answer": 5.0},
    ]
    engine, backend = make_engine(
        " She has 3+4 = 7 pens.",
        " Bo has 7 left.",  # wrong
        "2 * 6 = 12.\nSo 12.",  # two lines
        "She has 5 left.",
    )
    engine.prompts["toolformer"] = Prompt("chat", stops=((), ()))  # let it write two lines
    kept = asyncio.run(own_answers(engine, problems, workers=1))
    assert kept == [
        {
            "id": "a",
            "text": "Question: Ann has 3 pens and buys 4. How many?\nAnswer: She has 3+4 = 7 pens.",
        },
        {"id": "d", "text": "Question: Di has 9 and gives 4. How many?\nAnswer: She has 5 left."},
    ]
    # In the service's one-sentence style, without a tool in the prompt.
    assert all("Echo" not in p and "Question: " in p for p in backend.prompts)


@pytest.mark.model
def test_the_model_voice_keeps_the_default_models_right_answers(tmp_path):
    out = tmp_path / "corpus.jsonl"
    done = cli(
        "toolformer",
        "corpus",
        *("--source", "one_step", "--voice", "model", "--size", "8", "--seed", "1"),
        *("--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"{len(records)} texts: the model's right answers to 8 problems" in done.stdout
    assert records, "the default model answers none of 8 short problems right"
    problems = {p["id"]: p for p in one_step_problems(8, seed=1)}
    for record in records:
        question, _, answer = record["text"].partition("\nAnswer: ")
        problem = problems[record["id"]]
        assert question == f"Question: {problem['question']}"
        assert same_number(last_number(answer), problem["answer"])
        assert "[" not in answer and "\n" not in answer


OPERATIONS = {"+": float.__add__, "-": float.__sub__, "*": float.__mul__, "/": float.__truediv__}


def test_one_step_problems_are_worked_right_in_one_sentence():
    problems = list(one_step_problems(400, seed=5))
    assert problems == list(one_step_problems(400, seed=5))
    assert len({p["id"] for p in problems}) == 400
    assert len({p["question"] for p in problems}) > 390  # the draws vary
    shapes = set()
    for problem in problems:
        step = re.search(r"(\d+) ([-+*/]) (\d+) = (\d+)", problem["solution"])
        assert step, problem["solution"]
        left, operation, right, result = step.groups()
        assert OPERATIONS[operation](float(left), float(right)) == float(result) > 0
        assert float(result) == problem["answer"]
        assert problem["solution"].count(".") == 1 and problem["solution"].endswith(".")
        shapes.add(re.sub(r"\d+", "N", problem["question"].split(" ", 1)[1])[:25])
    assert len(shapes) > 20


def test_the_one_step_source_writes_the_problems_with_their_answers(tmp_path):
    out = tmp_path / "corpus.jsonl"
    done = cli("toolformer", "corpus", "--size", "300", "--out", str(out))  # the default source
    assert done.returncode == 0, done.stderr
    assert f"300 texts (one_step, seed 0): {out}" in done.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = list(one_step_problems(300, seed=0))
    assert [r["id"] for r in records] == [p["id"] for p in expected]
    assert records[0]["text"] == (
        f"Question: {expected[0]['question']}\nAnswer: {expected[0]['solution']}"
    )
    questions = {json.loads(line)["question"].strip() for line in SVAMP.read_text().splitlines()}
    assert not {p["question"] for p in expected} & questions


# -- GSM8K's training solutions (`--source gsm8k`) ----------------------------------------------

DATA = Path(__file__).resolve().parents[1] / "data"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def test_the_annotations_are_stripped_exactly():
    solution = "She earns 12/60 = $<<12/60=0.2>>0.2 a minute.\nSo 50*0.2 = <<50*0.2=10>>10.\n"
    assert plain(solution) == "She earns 12/60 = $0.2 a minute.\nSo 50*0.2 = 10.\n"
    assert human_calls(solution) == (
        "She earns 12/60 = [Calculator(12/60) → 0.2] $0.2 a minute.\n"
        "So 50*0.2 = [Calculator(50*0.2) → 10] 10.\n"
    )
    for row in _rows("gsm8k_train.jsonl"):
        stripped = plain(row["solution"])
        assert "<<" not in stripped and ">>" not in stripped, row["id"]
        # Nothing but the annotations is removed: the text outside them is kept, in order.
        outside = re.split(r"<<[^<>]*>>", row["solution"])
        assert stripped == "".join(outside), row["id"]


def test_the_people_s_calls_are_the_calls_the_engine_reads_with_their_results():
    row = _rows("gsm8k_train.jsonl")[0]
    calls = [s for s in parse(human_calls(row["solution"])) if isinstance(s, Call)]
    assert [(c.name, c.args, c.result) for c in calls] == [
        ("Calculator", "48/2", "24"),
        ("Calculator", "48+24", "72"),
    ]
    assert _words(strip_calls(human_calls(row["solution"]))) == _words(plain(row["solution"]))


def test_the_corpus_never_holds_a_held_apart_problem():
    held = _rows("gsm8k_dev.jsonl") + _rows("gsm8k_tune.jsonl")
    everything = list(gsm8k_problems(10_000, seed=0, train=DATA / "gsm8k_train.jsonl"))
    assert len(everything) == 7473 - len(held)  # all the rest, each once
    assert not {r["id"] for r in everything} & {r["id"] for r in held}
    assert not {r["question"] for r in everything} & {r["question"] for r in held}


def test_gsm8k_texts_keep_one_step_a_line_and_the_same_seed_gives_the_same_texts(monkeypatch):
    monkeypatch.chdir(DATA.parent)  # the command reads data/ from the repository's folder
    first = list(worked_problems(5, 3, "gsm8k"))
    assert first == list(worked_problems(5, 3, "gsm8k"))
    assert first != list(worked_problems(5, 4, "gsm8k"))
    for record in first:
        assert record["text"].startswith("Question: ") and "\nAnswer: " in record["text"]
        assert "<<" not in record["text"] and "[Calculator(" in record["annotated"]
        answer = record["text"].split("\nAnswer: ")[1]
        assert _words(strip_calls(record["annotated"].split("\nAnswer: ")[1])) == _words(answer)


def _words(text: str) -> list[str]:
    return text.split()
