"""The GSM8K samples held apart are what `data/split_gsm8k.py` makes, and nothing that teaches the
model (a prompt example, Toolformer's corpus) comes from them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from agent_server.core.prompts import read_prompt

DATA = Path(__file__).resolve().parents[1] / "data"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def test_the_split_script_rebuilds_the_samples_exactly(tmp_path):
    for name in ("split_gsm8k.py", "gsm8k_train.jsonl"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    subprocess.run([sys.executable, str(tmp_path / "split_gsm8k.py")], check=True)
    for name in ("gsm8k_dev.jsonl", "gsm8k_tune.jsonl"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_dev_and_tune_are_disjoint_samples_of_train():
    train = {r["id"]: r for r in rows("gsm8k_train.jsonl")}
    dev, tune = rows("gsm8k_dev.jsonl"), rows("gsm8k_tune.jsonl")
    assert (len(train), len(dev), len(tune)) == (7473, 300, 100)
    assert all(train[r["id"]] == r for r in dev + tune)
    assert not {r["id"] for r in dev} & {r["id"] for r in tune}


def test_no_prompt_example_is_a_held_apart_problem():
    held = {r["question"] for r in rows("gsm8k_dev.jsonl") + rows("gsm8k_tune.jsonl")}
    for name in ("strategies/calculator.txt", "examples/Calculator.txt"):
        asked = re.findall(r"^Question: (.*)$", read_prompt(name), re.MULTILINE)
        assert asked and not set(asked) & held, name
