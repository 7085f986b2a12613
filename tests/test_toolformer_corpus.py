"""`agent-server toolformer corpus`: worked word problems from reasoning-gym, run as a user would.

No model: the corpus is text. Checked: the scoring residue is gone, solutions are short and on one
line, the same seed gives the same texts, and no text is a question of the math evaluation set.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_run import cli

from agent_server.toolformer.corpus import INSTRUCTION, text, worked_problems

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
    done = cli("toolformer", "corpus", "--size", "300", "--seed", "0", "--out", str(out))
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
    assert "--size must be at least 1" in done.stderr
    assert not (tmp_path / "c.jsonl").exists()
