"""`agent-server toolformer corpus`: texts to annotate, worked arithmetic from a PyPI package.

Toolformer annotates ordinary text where a tool would have helped. The Calculator helps where a
text states a computation and its result, so the corpus is worked solutions to word problems:
reasoning-gym's `gsm_symbolic` generators (Apache-2.0, the `train` extra). They are templates
after GSM-Symbolic (Mirzadeh et al., 2024), itself built from GSM8K's test problems, filled with
fresh names and numbers by a seeded generator, each with its step-by-step solution. Nothing here
comes from SVAMP, the math evaluation set, and nothing is downloaded.

A text is the problem and its solution, in the shape the service's few-shot prompt uses:
"Question: … Answer: …". The solution's last line ("#### 288", GSM8K's answer marker) and the
generator's answer-format instruction are dropped; neither is language a model should learn.

Only problems solved in at least one and at most `MAX_STEPS` (2) steps, one line of the
solution each, are kept (about 30% of what the generators make), and their lines are joined into
one paragraph: the service asks for answers "in one or two sentences" and a plain-style answer
ends at its first newline. Fine-tuned on all of them, with solutions of up to 14 lines, the
default model took to writing three- and four-step answers to one-step questions, and scored
21% on the math eval against its base's 27% (README, "Toolformer training").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_server.errors import ConfigError

GENERATOR = "gsm_symbolic"
# What reasoning-gym appends to every question for its own scoring.
INSTRUCTION = " Give the result as your final answer. Do not include units."
ANSWER_MARKER = re.compile(r"\n?#### *[^\n]*\s*$")
MAX_STEPS = 2
# Problems drawn from the generator per text wanted: enough that `size` short ones are found.
DRAWS = 6


def text(question: str, solution: str) -> str:
    """One corpus text: the problem and its worked solution, without the scoring residue and
    on one line."""
    question = question.removesuffix(INSTRUCTION).strip()
    solution = " ".join(s if s[-1] in ".!?" else s + "." for s in steps(solution))
    return f"Question: {question}\nAnswer: {solution}"


def steps(solution: str) -> list[str]:
    """The solution's steps: its lines, without the answer marker."""
    lines = ANSWER_MARKER.sub("", solution).strip().splitlines()
    return [line.strip() for line in lines if line.strip()]


def worked_problems(size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Up to `size` records {id, text} of problems solved in at most `MAX_STEPS` steps; the
    same `seed` gives the same texts."""
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ConfigError("the corpus comes from reasoning-gym: pip install -e '.[train]'") from exc
    dataset = reasoning_gym.create_dataset(GENERATOR, size=size * DRAWS, seed=seed)
    kept = 0
    for number, item in enumerate(dataset):
        solution = item["metadata"]["answer_cot"]
        if not 1 <= len(steps(solution)) <= MAX_STEPS:
            continue
        yield {"id": f"{GENERATOR}-{seed}-{number}", "text": text(item["question"], solution)}
        kept += 1
        if kept == size:
            return


def write(out: Path, size: int, seed: int) -> int:
    """Write the corpus as JSONL; how many texts were written."""
    if size < 1:
        raise ConfigError("--size must be at least 1")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("w", encoding="utf-8") as handle:
        for record in worked_problems(size, seed):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
    return written
