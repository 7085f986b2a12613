"""`agent-server toolformer corpus`: texts to annotate, worked arithmetic word problems.

Three sources: `gsm8k`, solutions written by people; `gsm_symbolic`, below; and `one_step`
(`word_problems.py`), one-step problems from templates with one-sentence answers.

`gsm8k` reads GSM8K's training file (`data/gsm8k_train.jsonl`, MIT) without the problems held
apart (`data/gsm8k_dev.jsonl`, the dev set the math figures come from, and
`data/gsm8k_tune.jsonl`, where prompts were tried): each solution keeps its lines (one step a
line, as the `calculator` strategy reasons) with its calculator annotations removed exactly
(`48/2 = <<48/2=24>>24` becomes `48/2 = 24`), so that the model annotates the plain text itself.
The annotations people wrote are kept beside it as inline calls (`annotated`: `48/2 =
[Calculator(48/2) → 24] 24`), the comparison Toolformer's own calls invite.

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

With `--voice model` the answers are the model's own instead: each problem is put to the service
without tools, greedy, and the answers that reach the problem's result are kept, as written.
Fine-tuning on the generators' solutions moves the model towards their wording and length; on
its own right answers, annotated, what changes is where it calls the Calculator and, since only
right answers are kept, which of its own ways of answering it prefers (rejection sampling, as in
STaR, Zelikman et al., 2022).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_server.errors import ConfigError
from agent_server.toolformer.word_problems import one_step_problems

if TYPE_CHECKING:
    from agent_server.core.engine import Engine
    from agent_server.evals.runner import Progress

GENERATOR = "gsm_symbolic"
GSM8K = "gsm8k"
SOURCES = (GENERATOR, "one_step", GSM8K)
DATA = Path("data")
GSM8K_TRAIN = DATA / "gsm8k_train.jsonl"
# The samples the figures and the prompt choices come from: never a training text.
HELD_APART = (DATA / "gsm8k_dev.jsonl", DATA / "gsm8k_tune.jsonl")
# GSM8K's calculator annotation, `<<48/2=24>>` (the expression up to its last `=`); a currency
# sign written before it (`$<<12/60=0.2>>0.2`) is kept with the number.
ANNOTATION = re.compile(r"(\$?)<<([^<>]*)=([^<>=]*)>>")
# What reasoning-gym appends to every question for its own scoring.
INSTRUCTION = " Give the result as your final answer. Do not include units."
ANSWER_MARKER = re.compile(r"\n?#### *[^\n]*\s*$")
MAX_STEPS = 2
# The model's own answers (`--voice model`) are one sentence: 160 tokens leave room for a few.
OWN_ANSWER_TOKENS = 160
# Problems drawn from the generator per text wanted: enough that `size` short ones are found.
DRAWS = 6


def text(question: str, solution: str) -> str:
    """One corpus text: the problem and its worked solution, without the scoring residue and
    on one line."""
    solution = " ".join(s if s[-1] in ".!?" else s + "." for s in steps(solution))
    return f"Question: {asked(question)}\nAnswer: {solution}"


def asked(question: str) -> str:
    """The problem as a user would ask it: without reasoning-gym's scoring instruction."""
    return question.removesuffix(INSTRUCTION).strip()


def steps(solution: str) -> list[str]:
    """The solution's steps: its lines, without the answer marker."""
    lines = ANSWER_MARKER.sub("", solution).strip().splitlines()
    return [line.strip() for line in lines if line.strip()]


def short_problems(size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Up to `size` problems {id, question, solution, answer} solved in at most `MAX_STEPS`
    steps; the same `seed` gives the same problems."""
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
        yield {
            "id": f"{GENERATOR}-{seed}-{number}",
            "question": asked(item["question"]),
            "solution": solution,
            "answer": float(item["answer"]),
        }
        kept += 1
        if kept == size:
            return


def plain(solution: str) -> str:
    """A GSM8K solution as people read it: its calculator annotations removed, nothing else."""
    return ANNOTATION.sub(lambda m: m.group(1), solution)


def human_calls(solution: str) -> str:
    """A GSM8K solution with its annotations as inline Calculator calls, results spliced."""
    return ANNOTATION.sub(
        lambda m: f"[Calculator({m.group(2)}) → {m.group(3)}] {m.group(1)}", solution
    )


def gsm8k_problems(
    size: int,
    seed: int,
    train: Path = GSM8K_TRAIN,
    held_apart: Sequence[Path] = HELD_APART,
) -> Iterator[dict[str, Any]]:
    """Up to `size` problems {id, question, solution, annotated, answer} of GSM8K's training
    file, none of `held_apart`, in an order the `seed` fixes."""
    held = {json.loads(line)["id"] for path in held_apart for line in _lines(path)}
    rows = [row for row in map(json.loads, _lines(train)) if row["id"] not in held]
    random.Random(seed).shuffle(rows)
    for row in rows[:size]:
        yield {
            "id": row["id"],
            "question": row["question"],
            "solution": plain(row["solution"]),
            "annotated": human_calls(row["solution"]),
            "answer": float(row["answer"]),
        }


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} is missing: run from the repository's folder") from exc


def problems(source: str, size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Up to `size` problems {id, question, solution, answer} from `source` (one of `SOURCES`)."""
    if source == "one_step":
        return one_step_problems(size, seed)
    if source == GENERATOR:
        return short_problems(size, seed)
    if source == GSM8K:
        return gsm8k_problems(size, seed)
    raise ConfigError(f"unknown source {source!r}: one of {', '.join(SOURCES)}")


def worked_problems(size: int, seed: int, source: str = GENERATOR) -> Iterator[dict[str, Any]]:
    """Up to `size` records {id, text}: problems with their worked solutions (GSM8K's: its
    lines kept, and `annotated`, the same text with the people's calls)."""
    for problem in problems(source, size, seed):
        if source != GSM8K:
            yield {"id": problem["id"], "text": text(problem["question"], problem["solution"])}
            continue
        asked = f"Question: {problem['question']}\nAnswer: "
        yield {
            "id": problem["id"],
            "text": asked + problem["solution"],
            "annotated": asked + problem["annotated"],
        }


async def own_answers(
    engine: Engine,
    problems: Iterable[dict[str, Any]],
    workers: int = 1,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Records {id, text} of the problems the model answers right without tools, each text the
    problem and the model's answer as written: in the service's one-sentence style, greedy."""
    from agent_server.core import numbers
    from agent_server.core.decoding import Sampling
    from agent_server.evals.runner import run_all

    async def one(problem: dict[str, Any]) -> dict[str, Any] | None:
        final = await engine.run(
            problem["question"],
            strategy="toolformer",
            tools=[],
            sampling=Sampling(max_new_tokens=OWN_ANSWER_TOKENS),
        )
        written = final.text.strip()
        predicted = numbers.last_number(final.value)
        if not written or "\n" in written or not numbers.same_number(predicted, problem["answer"]):
            return None
        return {"id": problem["id"], "text": f"Question: {problem['question']}\nAnswer: {written}"}

    answered = await run_all(list(problems), one, workers, progress)
    return [record for record in answered if record is not None]


def write(out: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write the corpus as JSONL; how many texts were written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
    return written
