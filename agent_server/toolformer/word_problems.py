"""One-step arithmetic word problems, each with a one-sentence worked answer, from templates.

The reasoning-gym generators (`corpus.py`) make GSM8K's problems: two or more steps at the
least, worked in several sentences. Fine-tuned on them, the default model took on that length
and answered one-step questions in three or four steps, wrongly (README, "Toolformer training").
These are the other kind: one operation, sometimes beside a number that does not matter, and
the answer in one sentence, the length the service asks for. The operation is stated in the
answer ("54 - 48 = 6") so that Toolformer's generation can find where a Calculator call gives
the number that follows.

The templates were written for this project; names, objects and numbers are drawn by a seeded
generator. None is a question of the math evaluation set (`tests/test_toolformer_corpus.py`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

NAMES = [
    ("Ava", "she"), ("Ben", "he"), ("Chloe", "she"), ("Dev", "he"), ("Elena", "she"),
    ("Farid", "he"), ("Grace", "she"), ("Hugo", "he"), ("Iris", "she"), ("Jonas", "he"),
    ("Keiko", "she"), ("Liam", "he"), ("Maya", "she"), ("Nico", "he"), ("Olga", "she"),
    ("Pablo", "he"), ("Quinn", "she"), ("Ravi", "he"), ("Sara", "she"), ("Tomas", "he"),
]  # fmt: skip
THINGS = [
    "apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "shells",
    "balloons", "cards", "oranges", "toy cars", "flowers", "coins", "eggs", "crayons",
]  # fmt: skip
PLACES = ["box", "basket", "garden", "classroom", "shop", "library", "bag", "jar"]
COLOURS = ["red", "blue", "green", "yellow", "white", "purple"]


@dataclass(frozen=True)
class Template:
    question: str
    answer: str
    # The numbers a problem needs, drawn so that every step stays a whole positive number.
    numbers: Callable[[random.Random], dict[str, int]]
    result: str  # which of them the answer is


def _pair(rng: random.Random, low: int = 2, high: int = 99) -> dict[str, int]:
    a, b = sorted(rng.sample(range(low, high), 2), reverse=True)
    return {"a": a, "b": b, "sum": a + b, "diff": a - b}


def _product(rng: random.Random) -> dict[str, int]:
    a, b = rng.randint(2, 25), rng.randint(2, 30)
    return {"a": a, "b": b, "product": a * b, "extra": rng.randint(2, 60)}


TEMPLATES = [
    Template(
        "{name} had {b} {things}. Then {pronoun} got {a} more. How many {things} does {name} "
        "have now?",
        "{name} has {b} + {a} = {sum} {things} now.",
        _pair,
        "sum",
    ),
    Template(
        "{name} had {a} {things} and gave {b} of them to {friend}. How many {things} does {name} "
        "have left?",
        "{name} has {a} - {b} = {diff} {things} left.",
        _pair,
        "diff",
    ),
    Template(
        "{name} has {a} {things} and {friend} has {b} {things}. How many more {things} does "
        "{name} have than {friend}?",
        "{name} has {a} - {b} = {diff} more {things} than {friend}.",
        _pair,
        "diff",
    ),
    Template(
        "{friend} has {b} {things}, which is {diff} fewer than {name}. How many {things} does "
        "{name} have?",
        "{name} has {b} + {diff} = {a} {things}.",
        _pair,
        "a",
    ),
    Template(
        "There are {a} {colour} {things} and {b} {other_colour} {things} in the {place}. How "
        "many {things} are in the {place} altogether?",
        "There are {a} + {b} = {sum} {things} in the {place}.",
        _pair,
        "sum",
    ),
    Template(
        "{name} wants {a} {things}. {Pronoun} already has {b}. How many more {things} does "
        "{pronoun} need?",
        "{name} needs {a} - {b} = {diff} more {things}.",
        _pair,
        "diff",
    ),
    Template(
        "{name} had some {things}. After {pronoun} found {b} more, {pronoun} had {a}. How many "
        "{things} did {name} have at first?",
        "{name} had {a} - {b} = {diff} {things} at first.",
        _pair,
        "diff",
    ),
    Template(
        "{name} has {a} bags with {b} {things} in each bag. How many {things} does {name} have?",
        "{name} has {a} * {b} = {product} {things}.",
        _product,
        "product",
    ),
    Template(
        "{name} collects {b} {things} every day. How many {things} does {pronoun} collect in "
        "{a} days?",
        "{name} collects {b} * {a} = {product} {things} in {a} days.",
        _product,
        "product",
    ),
    Template(
        "{name} shares {product} {things} equally among {a} friends. How many {things} does each "
        "friend get?",
        "Each friend gets {product} / {a} = {b} {things}.",
        _product,
        "b",
    ),
    Template(
        "{name} picked {product} {things} in {a} days, the same number each day. How many "
        "{things} did {pronoun} pick each day?",
        "{name} picked {product} / {a} = {b} {things} each day.",
        _product,
        "b",
    ),
    Template(
        "{name} had {product} {things} and {extra} {other_things}. {Pronoun} put the {things} "
        "into boxes of {b}. How many boxes did {pronoun} fill?",
        "{name} filled {product} / {b} = {a} boxes.",
        _product,
        "a",
    ),
    Template(
        "{name} had {a} {things} and {extra} {other_things}. {Pronoun} gave away {b} {things}. "
        "How many {things} does {name} have now?",
        "{name} has {a} - {b} = {diff} {things} now.",
        lambda rng: {**_pair(rng), "extra": rng.randint(2, 60)},
        "diff",
    ),
]


def problem(rng: random.Random, id: str) -> dict[str, Any]:
    """The next problem of the seeded stream: {id, question, solution, answer}."""
    template = rng.choice(TEMPLATES)
    (name, pronoun), (friend, _) = rng.sample(NAMES, 2)
    things, other_things = rng.sample(THINGS, 2)
    colour, other_colour = rng.sample(COLOURS, 2)
    numbers = template.numbers(rng)
    fields = {
        "name": name,
        "pronoun": pronoun,
        "Pronoun": pronoun.capitalize(),
        "friend": friend,
        "things": things,
        "other_things": other_things,
        "colour": colour,
        "other_colour": other_colour,
        "place": rng.choice(PLACES),
        **numbers,
    }
    return {
        "id": id,
        "question": template.question.format(**fields),
        "solution": template.answer.format(**fields),
        "answer": float(numbers[template.result]),
    }


def one_step_problems(size: int, seed: int) -> Iterator[dict[str, Any]]:
    """`size` problems; the same `seed` gives the same ones."""
    rng = random.Random(seed)
    for number in range(size):
        yield problem(rng, f"one_step-{seed}-{number}")
