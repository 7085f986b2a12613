"""Strategies: the routing of `auto`, the refusals, and how each reads an answer's value (with the
program's self-check)."""

from __future__ import annotations

import pytest

from agent_server.core import strategies
from agent_server.core.events import Check, ResultEvent
from agent_server.core.strategies import boxed, read_value, resolve, route, stated, with_results
from agent_server.errors import BadRequest

ALL = ["Calculator", "Python", "Search"]


def result(tool: str, argument: str, value: str | None, error: str | None = None) -> ResultEvent:
    return ResultEvent(0, tool, argument, value, error, 0.0)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How many days are between 3 March 2025 and 19 November 2025?", "consensus"),
        ("A shop sells pencils at three for 75 cents. How much are 17?", "consensus"),
        ("What is half of a dozen?", "consensus"),
        ("Who wrote Pride and Prejudice?", "toolformer"),
        ("What is the capital of Poland?", "toolformer"),
    ],
)
def test_auto_reasons_by_consensus_on_a_number(question: str, expected: str) -> None:
    assert route(question, ALL).name == expected


def test_auto_answers_in_sentences_when_python_is_not_enabled() -> None:
    assert route("What is 2 + 2?", ["Calculator"]).name == "toolformer"


def test_unknown_strategy_and_missing_tools_are_bad_requests() -> None:
    with pytest.raises(BadRequest, match="unknown strategy 'magic'; choose one of auto"):
        resolve("magic", "q", ALL)
    with pytest.raises(BadRequest, match="needs the Python tool"):
        resolve("program", "q", ["Calculator"])
    assert resolve("cot", "q", []).tools == ()


def test_boxed_reads_the_last_box_and_nested_braces() -> None:
    assert boxed(r"so \boxed{12} or rather \boxed{\frac{3}{4} = 0.75}") == "0.75"
    assert boxed(r"\boxed{1,234}.") == "1,234"
    assert boxed("no box: 5") is None
    assert boxed(r"\boxed{unclosed 3") is None
    # A box that holds no number means the answer is not one: never the question's year.
    assert stated(r"1 January 2000 was a \boxed{\text{Saturday}}.") is None
    assert stated(r"1 January 2000 was a Saturday.") == "2000"
    assert stated(r"So \boxed{1,234}, not 5.") == "1,234"


def test_cot_value_is_the_boxed_number_else_the_last() -> None:
    cot = strategies.COT
    assert read_value(cot, r"First 2 + 3 = 5. So \boxed{5} apples, from 4 trees.", []).value == "5"
    assert read_value(cot, "It is 5 apples, or 6.", []).value == "6"
    assert read_value(cot, "I do not know.", []).value is None


def test_calculator_value_counts_a_result_that_stands_in_the_sentence() -> None:
    text = "She has [Calculator(9+4) → 13] apples."
    trace = [result("Calculator", "9+4", "13")]
    assert with_results(text, trace) == "She has 13 apples."
    assert read_value(strategies.CALCULATOR, text, trace).value == "13"
    failed = "[Calculator(x+) → Error: bad] I think 7."
    assert (
        read_value(strategies.CALCULATOR, failed, [result("Calculator", "x+", None, "bad")]).value
        == "7"
    )


def test_program_value_is_what_it_printed_when_the_answer_says_so() -> None:
    text = (
        "```python\nprint(0.2857142857)\n```\n```output\n0.2857142857\n```\nIt is 0.29, in 3 years."
    )
    trace = [result("Python", "print(0.2857142857)", "0.2857142857")]
    reading = read_value(strategies.PROGRAM, text, trace)
    assert reading.value == "0.2857142857" and reading.checks == ()


def test_a_stated_answer_the_program_did_not_print_is_caught() -> None:
    text = "```python\nprint(7)\n```\n```output\n7\n```\nSo the answer is \\boxed{8}."
    reading = read_value(strategies.PROGRAM, text, [result("Python", "print(7)", "7")])
    assert reading.value == "7"
    assert reading.checks == (Check("stated_answer_differs", stated="8", computed="7"),)


def test_the_last_program_that_ran_counts_after_a_repair() -> None:
    text = (
        "```python\nprint(x)\n```\n```output\nError: NameError\n```\n"
        "```python\nprint(6)\n```\n```output\n6\n```\nSix."
    )
    trace = [result("Python", "print(x)", None, "NameError"), result("Python", "print(6)", "6")]
    reading = read_value(strategies.PROGRAM, text, trace)
    assert reading.value == "6" and reading.checks == ()  # a closing without a number is no check


def test_without_a_program_that_ran_the_stated_number_is_the_value() -> None:
    text = "```python\nprint(1/0)\n```\n```output\nError: ZeroDivisionError\n```\nSo \\boxed{4}."
    trace = [result("Python", "print(1/0)", None, "ZeroDivisionError: division by zero")]
    assert read_value(strategies.PROGRAM, text, trace).value == "4"
    assert read_value(strategies.PROGRAM, "Just 12.", []).value == "12"


def test_a_program_that_printed_a_word_has_no_value_but_the_questions_numbers() -> None:
    text = (
        "We use datetime.\n```python\nprint(date(2000, 1, 1).strftime('%A'))\n```\n"
        "```output\nSaturday\n```\n1 January 2000 was a \\boxed{\\text{Saturday}}."
    )
    trace = [result("Python", "print(date(2000, 1, 1).strftime('%A'))", "Saturday")]
    assert read_value(strategies.TIR, text, trace).value is None


def test_a_number_only_an_error_message_holds_is_never_the_value() -> None:
    error = "html.example cannot be reached (HTTP 404)"
    text = '[Search("who wrote Pride and Prejudice") → Error: ' + error + "] 404."
    trace = [result("Search", "who wrote Pride and Prejudice", None, error)]
    reading = read_value(strategies.TOOLFORMER, text, trace, "Who wrote Pride and Prejudice?")
    assert reading.value is None
    assert reading.checks == (Check("value_from_error", stated="404"),)
    # The same number in the question, or in a result, is the model's to use.
    asked = read_value(strategies.TOOLFORMER, text, trace, "Is 404 a prime?")
    assert asked.value == "404" and asked.checks == ()
