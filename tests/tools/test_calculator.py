"""Tests for the Calculator tool: values, refusals, size bounds, the time limit and recovery."""

from __future__ import annotations

import asyncio
import math
import operator
import os
import signal
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools._worker import ARITY, Evaluator
from tools.base import MAX_RESULT_CHARS, Tool, ToolError, ToolTimeout
from tools.calculator import Calculator, parse

# Minutes of sympy work, every part of it whitelisted: the way to reach the time limit for real.
SLOW = "factor(x**200 - y**200)"


@pytest.fixture(scope="module")
def calc() -> Iterator[Calculator]:
    with Calculator() as calculator:
        yield calculator


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator(max_digits=10_000)


def run(calculator: Calculator, text: str) -> str:
    return asyncio.run(calculator(text))


def refusal(calculator: Calculator, text: str) -> str:
    with pytest.raises(ToolError) as caught:
        run(calculator, text)
    return str(caught.value)


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_it_is_a_tool_and_its_example_works(calc: Calculator) -> None:
    assert isinstance(calc, Tool)
    assert (calc.name, calc.example) == ("Calculator", "400/1400")
    assert "\n" not in calc.description
    assert run(calc, calc.example) == "0.2857"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # arithmetic, precedence, powers, unary minus
        ("1234*5678", "7006652"),
        ("2+3*4", "14"),
        ("(2+3)*4", "20"),
        ("2**10", "1024"),
        ("2^10", "1024"),
        ("2^3^2", "512"),
        ("-3^2", "-9"),
        ("2*-3", "-6"),
        ("10 % 3", "1"),
        # fractions and decimals, exact until the end
        ("400/1400", "0.2857"),
        ("1/8", "0.125"),
        ("-1/8", "-0.125"),
        ("2/3", "0.6667"),
        ("2.5*4", "10"),
        ("0.1 + 0.2", "0.3"),
        ("1/3 + 1/6", "0.5"),
        ("1/7*7", "1"),
        ("1e3", "1000"),
        # percentages and friendly notation
        ("15%", "0.15"),
        ("15% of 80", "12"),
        ("80 * 15%", "12"),
        ("(1+2)%", "0.03"),
        ("$1200 * 5%", "60"),
        ("6 × 7", "42"),
        ("84 ÷ 2", "42"),
        ("  400/1400 =  ", "0.2857"),
        # magnitudes
        ("2**64", "18446744073709551616"),
        ("10**20", "100000000000000000000"),
        ("10**21", "1e+21"),
        ("2**100", "1.268e+30"),
        ("factorial(25)", "1.551e+25"),
        ("1/3000000", "3.333e-7"),
        ("exp(-100)", "3.72e-44"),
        ("999.99996", "1000"),
        # functions and constants
        ("sqrt(16)", "4"),
        ("sqrt(2)", "1.4142"),
        ("2**0.5", "1.4142"),
        ("exp(0)", "1"),
        ("log(e)", "1"),
        ("log(8, 2)", "3"),
        ("sin(pi/2)", "1"),
        ("cos(pi)", "-1"),
        ("tan(pi/4)", "1"),
        ("pi", "3.1416"),
        ("e", "2.7183"),
        ("abs(-5)", "5"),
        ("round(2.5)", "3"),
        ("round(-2.5)", "-3"),
        ("round(3.14159, 2)", "3.14"),
        ("floor(2.7)", "2"),
        ("ceil(2.1)", "3"),
        ("factorial(10)", "3628800"),
        ("gcd(12, 18)", "6"),
        ("lcm(4, 6)", "12"),
        ("min(3, 1, 2)", "1"),
        ("max(3, 1, 2)", "3"),
        # algebra
        ("solve(x**2-4, x)", "[-2, 2]"),
        ("solve(2*x+3=7)", "[2]"),
        ("solve(x^2 = 2)", "[-1.4142, 1.4142]"),
        ("solve(x**2+1)", "[-I, I]"),
        ("solve(a*y - 3, y)", "[3/a]"),
        ("simplify(sin(x)**2 + cos(x)**2)", "1"),
        ("expand((x+1)**2)", "x**2 + 2*x + 1"),
        ("factor(x**2-1)", "(x - 1)*(x + 1)"),
        ("diff(x**3, x)", "3*x**2"),
        ("diff(x**3)", "3*x**2"),
        ("diff(x**3, x, 2)", "6*x"),
        ("integrate(x**2, x)", "x**3/3"),
        ("integrate(x**2, (x, 0, 3))", "9"),
        ("integrate(sin(t), (t, 0, pi))", "2"),
        ("a*b + a*b", "2*a*b"),
        # complex results and comparisons
        ("sqrt(-4)", "2*I"),
        ("sqrt(-2)", "1.4142*I"),
        ("(-8)**(1/3)", "1 + 1.7321*I"),
        ("2+2 = 4", "True"),
        ("3 > 4", "False"),
        ("4 ≥ 3", "True"),
    ],
)
def test_values(calc: Calculator, text: str, expected: str) -> None:
    assert run(calc, text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "unknown name '__import__'"),
        ("().__class__.__bases__", "unsupported syntax: attribute access"),
        ("(1).real", "unsupported syntax: attribute access"),
        ("open('/etc/passwd')", "unknown name 'open'"),
        ("lambda: 1", "unsupported syntax: lambda"),
        ("[1,2]", "unsupported syntax: list"),
        ("{1: 2}", "unsupported syntax: dict"),
        ("'abc'", "unsupported syntax: string"),
        ("[n for n in x]", "unsupported syntax: comprehension"),
        ("round(2.5, ndigits=1)", "keyword arguments are not supported"),
        ("sqrt(**{'a': 1})", "keyword arguments are not supported"),
        ("sqrt(*x)", "unsupported syntax: starred argument"),
        ("sqrt(2)(3)", "unsupported syntax: only named functions can be called"),
        ("1,234", "unsupported syntax: tuple (commas only separate function arguments)"),
        ("(x := 2)", "unsupported syntax: assignment"),
        ("7 // 2", "unsupported operator: //"),
        ("1 < 2 < 3", "unsupported syntax: chained comparison"),
        ("True", "unknown name True"),
        ("foo + 1", "unknown name 'foo'"),
        ("sqrt", "sqrt is a function: call it like sqrt(…)"),
        ("sqrt(1, 2)", "sqrt takes 1 argument(s), got 2"),
        ("integrate(x, (x, 1))", "integration limits are written (x, low, high)"),
        ("2 +", "syntax error: invalid syntax"),
        ("2x", "syntax error: invalid decimal literal"),
        ("   ", "empty expression"),
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0**-1", "division by zero"),
        ("log(0)", "undefined result"),
        ("9**9**9**9", "number too large (limit 10000 digits)"),
        ("10**10001", "number too large (limit 10000 digits)"),
        ("1e20000", "number too large (limit 10000 digits)"),
        ("sqrt(2)**(10**9)", "number too large (limit 10000 digits)"),
        ("x**100000", "exponent too large (limit 10000)"),
        ("factorial(1001)", "factorial argument too large (limit 1000)"),
        ("round(x)", "round: needs a real number"),
        ("diff(x**3, x, 0)", "diff: the order must be a whole number from 1 to 20"),
        ("solve(x*y)", "solve: say which variable, e.g. solve(…, x)"),
        ("solve(3)", "solve: the expression has no variable"),
    ],
)
def test_refusals(calc: Calculator, text: str, message: str) -> None:
    assert refusal(calc, text) == message


def test_hostile_text_is_refused_and_never_runs(calc: Calculator, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for payload in [
        f"__import__('os').system('touch {marker}')",
        f"open('{marker}', 'w')",
        f"sqrt.__globals__['__builtins__']['open']('{marker}', 'w')",
    ]:
        with pytest.raises(ToolError):
            run(calc, payload)
    assert not marker.exists()


def test_input_length_is_capped_before_parsing(calc: Calculator) -> None:
    huge = "1+" * 49_999 + "11"
    assert len(huge) == 100_000
    assert refusal(calc, huge) == "input too long (100000 characters, limit 500)"
    assert run(calc, "1+" * 249 + "11") == "260"  # exactly at the limit


def test_a_huge_power_is_refused_without_computing_it(calc: Calculator) -> None:
    run(calc, "1+1")  # the worker is warm
    started = time.monotonic()
    assert refusal(calc, "9**9**9**9") == "number too large (limit 10000 digits)"
    assert time.monotonic() - started < 1.0


def test_long_results_are_cut(calc: Calculator) -> None:
    result = run(calc, "expand((x+y+z+1)**12)")
    assert len(result) <= MAX_RESULT_CHARS
    assert result.endswith("…(output cut)")


def test_concurrent_calls_share_the_worker_in_turn(calc: Calculator) -> None:
    async def many() -> list[str]:
        return await asyncio.gather(*(calc(f"{n}*{n}") for n in range(12)))

    assert asyncio.run(many()) == [str(n * n) for n in range(12)]


def test_rewrites_before_parsing() -> None:
    assert parse("15% of 80") == ("bin", "*", ("pct", ("int", 15)), ("int", 80))
    assert parse("10 % 3") == ("bin", "%", ("int", 10), ("int", 3))
    assert parse("0.1") == ("dec", 1, -1)
    assert parse("2^3") == ("bin", "**", ("int", 2), ("int", 3))
    assert parse("solve(x=3)") == ("call", "solve", (("cmp", "==", ("sym", "x"), ("int", 3)),))


def test_the_worker_implements_exactly_the_whitelist(evaluator: Evaluator) -> None:
    assert set(evaluator.functions) == set(ARITY)


@pytest.mark.parametrize(
    "tree",
    [
        ("call", "__import__", (("int", 1),)),
        ("call", "sqrt", ()),
        ("sym", "os"),
        ("bin", "//", ("int", 1), ("int", 2)),
        ("int", "1"),
        ("attr", ("int", 1), "real"),
        ("call", "sqrt", (("limits", "x", ("int", 0), ("int", 1)),)),
    ],
)
def test_the_worker_refuses_trees_the_parser_never_makes(
    evaluator: Evaluator, tree: tuple[object, ...]
) -> None:
    with pytest.raises(ToolError, match="^malformed expression tree"):
        evaluator.build(tree)


def test_a_timeout_kills_the_worker_without_blocking_the_loop_and_a_fresh_one_follows() -> None:
    with Calculator(timeout_s=0.5) as slow:
        assert run(slow, "1+1") == "2"  # start-up is not part of the time limit
        first_pid = slow._worker_pid()
        assert first_pid is not None

        async def count_ticks_during_slow_call() -> int:
            task = asyncio.create_task(slow(SLOW))
            ticks = 0
            while not task.done():
                await asyncio.sleep(0.02)
                ticks += 1
            with pytest.raises(ToolTimeout, match=r"^timed out after 0.5 s$"):
                await task
            return ticks

        started = time.monotonic()
        ticks = asyncio.run(count_ticks_during_slow_call())
        assert 0.5 <= time.monotonic() - started < 3.0
        assert ticks >= 10  # the event loop kept running while the worker computed
        assert pid_gone(first_pid)
        assert run(slow, "6*7") == "42"
        assert slow._worker_pid() not in (None, first_pid)


def test_a_worker_killed_mid_call_or_while_idle_is_replaced() -> None:
    with Calculator(timeout_s=30) as calculator:
        assert run(calculator, "1+1") == "2"
        pid = calculator._worker_pid()
        assert pid is not None

        async def kill_during_call() -> None:
            task = asyncio.create_task(calculator(SLOW))
            await asyncio.sleep(0.3)
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(ToolError, match="crashed its worker process"):
                await task

        asyncio.run(kill_during_call())
        assert run(calculator, "2+3") == "5"

        idle_pid = calculator._worker_pid()
        assert idle_pid is not None and idle_pid != pid
        os.kill(idle_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not pid_gone(idle_pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run(calculator, "3+4") == "7"  # no error: the dead worker is noticed and replaced
        assert calculator._worker_pid() not in (None, idle_pid)


def test_close_stops_workers_and_instances_start_none_until_called() -> None:
    calculators = [Calculator() for _ in range(2)]
    assert all(c._worker_pid() is None for c in calculators)
    for n, calculator in enumerate(calculators):
        assert run(calculator, f"{n}+1") == str(n + 1)
    pids = [c._worker_pid() for c in calculators]
    assert None not in pids and len(set(pids)) == 2
    for calculator in calculators:
        calculator.close()
        calculator.close()  # closing twice is harmless
    assert all(c._worker_pid() is None for c in calculators)
    assert all(pid_gone(pid) for pid in pids if pid is not None)


_OPERATORS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


def _combine(parts: tuple[tuple[str, int], str, tuple[str, int]]) -> tuple[str, int]:
    (left_text, left), op, (right_text, right) = parts
    return f"({left_text} {op} {right_text})", _OPERATORS[op](left, right)


# Up to eight leaves of at most 50 stay below 10**21, so every answer prints as an exact integer.
integer_expressions = st.recursive(
    st.integers(-50, 50).map(lambda n: (str(n), n)),
    lambda children: st.tuples(children, st.sampled_from("+-*"), children).map(_combine),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(integer_expressions)
def test_integer_arithmetic_matches_python(calc: Calculator, case: tuple[str, int]) -> None:
    text, expected = case
    assert run(calc, text) == str(expected)


def _four_places(value: Fraction) -> str:
    """Round half away from zero to 4 places, exactly, and drop trailing zeros."""
    scaled = math.floor(abs(value) * 10_000 + Fraction(1, 2))
    text = f"{Decimal(scaled).scaleb(-4):f}".rstrip("0").rstrip(".") or "0"
    return "-" + text if value < 0 and text != "0" else text


@settings(max_examples=60, deadline=None)
@given(st.integers(-(10**6), 10**6), st.integers(1, 1000))
def test_division_prints_four_places(calc: Calculator, numerator: int, denominator: int) -> None:
    assert run(calc, f"{numerator}/{denominator}") == _four_places(Fraction(numerator, denominator))
