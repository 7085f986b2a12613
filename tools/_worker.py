"""The Calculator's worker process: builds sympy objects from a checked tree and formats them.

It runs apart from the server (see `tools.calculator`) so that a slow or huge computation can be
killed, and it caps its own address space. It receives only the tuple trees that
`tools.calculator.parse` makes, and it checks them again while building: an unknown tag, name or
shape is refused, so no text is ever evaluated here either. sympy and mpmath are imported here,
in the worker, and nowhere else.

Tree nodes (plain tuples, so they pickle through the pipe):
    ("int", n)  ("dec", mantissa, exp10)  ("const", "pi" | "e")  ("sym", letter)
    ("neg", a)  ("pct", a)  ("bin", "+" | "-" | "*" | "/" | "%" | "**", a, b)
    ("cmp", "==" | "!=" | "<" | "<=" | ">" | ">=", a, b)  ("call", name, (args…))
    ("limits", letter, low, high)   (only as the second argument of integrate)

Long (over 300 lines) because building every node kind, with its safety limits, stays in the one
file the worker process imports.
"""

from __future__ import annotations

import importlib
import math
import resource
import sys
from decimal import ROUND_HALF_UP, Decimal
from functools import reduce
from multiprocessing.connection import Connection
from typing import Any

from tools.base import ToolError

Node = tuple[Any, ...]

# name -> (fewest, most) arguments. The parser checks calls against this table and the worker
# implements exactly these names (a test holds the two together).
ARITY: dict[str, tuple[int, int]] = {
    "solve": (1, 2),
    "simplify": (1, 1),
    "expand": (1, 1),
    "factor": (1, 1),
    "diff": (1, 3),
    "integrate": (1, 2),
    "sqrt": (1, 1),
    "exp": (1, 1),
    "log": (1, 2),
    "sin": (1, 1),
    "cos": (1, 1),
    "tan": (1, 1),
    "abs": (1, 1),
    "round": (1, 2),
    "floor": (1, 1),
    "ceil": (1, 1),
    "factorial": (1, 1),
    "gcd": (2, 50),
    "lcm": (2, 50),
    "min": (1, 50),
    "max": (1, 50),
}
CONSTANTS = ("pi", "e")
MAX_FACTORIAL = 1000  # 1000! has 2,568 digits: plenty for a question, cheap to compute
MAX_DIFF_ORDER = 20
EXACT_INTEGER_LIMIT = 10**21  # integers below this print in full, as JavaScript does
RELATIONS = {"==": "Eq", "!=": "Ne", "<": "Lt", "<=": "Le", ">": "Gt", ">=": "Ge"}


def is_symbol_name(name: str) -> bool:
    """Free symbols are single letters a-z, except `e`, which is Euler's number."""
    return len(name) == 1 and "a" <= name <= "z" and name not in CONSTANTS


def _whole(value: Any, low: int, high: int, what: str) -> int:
    if not (value.is_Integer and low <= value <= high):
        raise ToolError(f"{what} must be a whole number from {low} to {high}")
    return int(value)


def serve(conn: Connection, max_digits: int, memory_bytes: int) -> None:
    """Answer each tree from `conn` with ("ok", text), ("error", message) or ("fatal", message)."""
    # A runaway expansion should hit MemoryError here rather than swap the whole machine.
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    # Sizes are already bounded by max_digits; str() of a legal result must not fail on Python's
    # separate 4,300-digit guard.
    sys.set_int_max_str_digits(0)
    evaluator = Evaluator(max_digits)
    conn.send(("ready", ""))
    while True:
        try:
            tree = conn.recv()
        except EOFError:  # the parent closed the pipe: we are done
            return
        try:
            reply = ("ok", evaluator.format(evaluator.build(tree)))
        except ToolError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            # sympy's caches may be half-updated now; the parent starts a fresh worker.
            conn.send(("fatal", "out of memory"))
            return
        except Exception as exc:  # sympy raises many kinds of error for input it cannot handle
            reason = " ".join(str(exc).split())[:200]
            reply = ("error", f"cannot compute this: {type(exc).__name__}: {reason}")
        conn.send(reply)


class Evaluator:
    """Builds sympy values from tree nodes under a size bound, and formats them for a reader."""

    def __init__(self, max_digits: int) -> None:
        # Untyped libraries: `Any` stops at this boundary.
        self.sp: Any = importlib.import_module("sympy")
        self.mpmath: Any = importlib.import_module("mpmath")
        self.max_digits = max_digits
        sp = self.sp
        self.functions: dict[str, Any] = {
            "solve": self._solve,
            "simplify": sp.simplify,
            "expand": sp.expand,
            "factor": sp.factor,
            "diff": self._diff,
            "integrate": self._integrate,
            "sqrt": sp.sqrt,
            "exp": sp.exp,
            "log": sp.log,
            "sin": sp.sin,
            "cos": sp.cos,
            "tan": sp.tan,
            "abs": sp.Abs,
            "round": self._round,
            "floor": sp.floor,
            "ceil": sp.ceiling,
            "factorial": self._factorial,
            "gcd": lambda *args: reduce(sp.gcd, args),
            "lcm": lambda *args: reduce(sp.lcm, args),
            "min": sp.Min,
            "max": sp.Max,
        }

    def build(self, node: Node) -> Any:
        """The sympy value of a tree node; `ToolError` for anything malformed or too large."""
        sp = self.sp
        match node:
            case ("int", int() as value):
                return self._sized(sp.Integer(value))
            case ("dec", int() as mantissa, int() as exp10):
                if abs(exp10) > self.max_digits:
                    raise self._too_large()
                return self._sized(sp.Integer(mantissa) * sp.Rational(10) ** exp10)
            case ("const", "pi"):
                return sp.pi
            case ("const", "e"):
                return sp.E
            case ("sym", str() as name) if is_symbol_name(name):
                return sp.Symbol(name)
            case ("neg", operand):
                return -self.build(operand)
            case ("pct", operand):
                return self.build(operand) / 100
            case ("bin", str() as op, left, right):
                return self._binary(op, self.build(left), self.build(right))
            case ("cmp", str() as op, left, right) if op in RELATIONS:
                return getattr(sp, RELATIONS[op])(self.build(left), self.build(right))
            case ("call", str() as name, tuple() as args) if name in self.functions:
                fewest, most = ARITY[name]
                if fewest <= len(args) <= most:
                    built = [self._argument(name, i, arg) for i, arg in enumerate(args)]
                    return self.functions[name](*built)
        raise ToolError(f"malformed expression tree: {str(node)[:60]}")

    def _argument(self, function: str, index: int, node: Node) -> Any:
        if function == "integrate" and index == 1 and node[:1] == ("limits",):
            match node:
                case ("limits", str() as name, low, high) if is_symbol_name(name):
                    return (self.sp.Symbol(name), self.build(low), self.build(high))
        return self.build(node)

    def _binary(self, op: str, left: Any, right: Any) -> Any:
        if op in ("/", "%") and right.is_zero is True:
            raise ToolError("division by zero")
        if op == "+":
            return self._sized(left + right)
        if op == "-":
            return self._sized(left - right)
        if op == "*":
            return self._sized(left * right)
        if op == "/":
            return self._sized(left / right)
        if op == "%":
            return self._sized(self.sp.Mod(left, right))
        if op == "**":
            return self._sized(self._power(left, right))
        raise ToolError(f"malformed expression tree: operator {op!r}")

    def _power(self, base: Any, exponent: Any) -> Any:
        if base.is_zero is True and exponent.is_negative is True:
            raise ToolError("division by zero")
        if exponent.is_number and not base.is_number and abs(exponent) > self.max_digits:
            raise ToolError(f"exponent too large (limit {self.max_digits})")
        if base.is_number and exponent.is_number:
            # sympy computes exact powers eagerly, so estimate the size first: a result has about
            # |exponent| * log10|base| digits (numerator and denominator counted for fractions).
            size = self._digits_per_unit(base)
            scale = self._log10_abs(exponent)
            if size > 0 and scale + math.log10(size) > math.log10(self.max_digits):
                raise self._too_large()
        return base**exponent

    def _digits_per_unit(self, x: Any) -> float:
        if x.is_Rational:
            if x.p == 0:
                return 0.0
            return math.log10(abs(int(x.p))) + math.log10(int(x.q))
        return abs(self._log10_abs(x))

    def _log10_abs(self, x: Any) -> float:
        if x.is_Rational:  # math.log10 takes Python ints of any size exactly
            return -math.inf if x.p == 0 else math.log10(abs(int(x.p))) - math.log10(int(x.q))
        magnitude = self.sp.Abs(x).evalf(15)
        if not magnitude.is_Float or magnitude == 0:
            return -math.inf
        return float(self.mpmath.log10(self.mpmath.mpf(magnitude)))

    def _sized(self, value: Any) -> Any:
        if value.is_Rational:
            bits = max(abs(int(value.p)).bit_length(), int(value.q).bit_length())
            if bits * math.log10(2) > self.max_digits:
                raise self._too_large()
        return value

    def _too_large(self) -> ToolError:
        return ToolError(f"number too large (limit {self.max_digits} digits)")

    def _only_symbol(self, expr: Any, function: str) -> Any:
        symbols = sorted(expr.free_symbols, key=str)
        if len(symbols) == 1:
            return symbols[0]
        if not symbols:
            raise ToolError(f"{function}: the expression has no variable")
        raise ToolError(f"{function}: say which variable, e.g. {function}(…, {symbols[0]})")

    def _symbol(self, value: Any, function: str) -> Any:
        if not isinstance(value, self.sp.Symbol):
            raise ToolError(f"{function}: the variable must be a single letter such as x")
        return value

    def _solve(self, expr: Any, symbol: Any = None) -> Any:
        symbol = self._only_symbol(expr, "solve") if symbol is None else symbol
        return self.sp.solve(expr, self._symbol(symbol, "solve"))

    def _diff(self, expr: Any, symbol: Any = None, order: Any = None) -> Any:
        symbol = self._only_symbol(expr, "diff") if symbol is None else symbol
        times = 1 if order is None else _whole(order, 1, MAX_DIFF_ORDER, "diff: the order")
        return self.sp.diff(expr, self._symbol(symbol, "diff"), times)

    def _integrate(self, expr: Any, spec: Any = None) -> Any:
        if isinstance(spec, tuple):  # (x, low, high), made by _argument
            return self.sp.integrate(expr, spec)
        symbol = self._only_symbol(expr, "integrate") if spec is None else spec
        return self.sp.integrate(expr, self._symbol(symbol, "integrate"))

    def _round(self, value: Any, places: Any = None) -> Any:
        # Half away from zero, as people round by hand (Python and sympy round half to even).
        if not (value.is_number and value.is_real):
            raise ToolError("round: needs a real number")
        scale = 10 ** (0 if places is None else _whole(places, 0, 100, "round: places"))
        sp = self.sp
        return sp.sign(value) * sp.floor(abs(value) * scale + sp.Rational(1, 2)) / scale

    def _factorial(self, value: Any) -> Any:
        if value.is_number and abs(value) > MAX_FACTORIAL:
            raise ToolError(f"factorial argument too large (limit {MAX_FACTORIAL})")
        return self.sp.factorial(value)

    def format(self, value: Any) -> str:
        """Text for a reader: exact integers, 4 decimal places, or 4 significant digits."""
        sp = self.sp
        if isinstance(value, list | tuple):  # solve() answers with a list
            return "[" + ", ".join(self.format(item) for item in value) + "]"
        if value is sp.true or value is sp.false:
            return str(bool(value))
        if value is sp.nan or value is sp.zoo:
            raise ToolError("undefined result")
        if value is sp.oo or value is sp.S.NegativeInfinity:
            return "infinity" if value is sp.oo else "-infinity"
        if not getattr(value, "is_number", False):
            return str(value)  # symbolic: sympy's own text, with ** for powers
        if value.is_Integer and abs(value) < EXACT_INTEGER_LIMIT:
            return str(value)
        approx = value.evalf(30)
        if approx.is_Float:
            return self._real(approx)
        real, imag = approx.as_real_imag()
        if not (real.is_Float or real.is_zero) or not imag.is_Float:
            return str(value)  # evalf could not reduce it to digits
        imag_text = {"1": "I", "-1": "-I"}.get(self._real(imag), self._real(imag) + "*I")
        if real.is_zero or self._real(real) == "0":
            return imag_text
        sign = " - " if imag_text.startswith("-") else " + "
        return self._real(real) + sign + imag_text.removeprefix("-")

    def _real(self, value: Any) -> str:
        mp = self.mpmath
        if value.is_zero:
            return "0"
        # Enough working digits to place the decimal point even for exponents like 10**100.
        with mp.workdps(30 + len(str(abs(int(mp.mag(mp.mpf(value))))))):
            number = mp.mpf(value)
            exp10 = int(mp.floor(mp.log10(abs(number))))
            if -3 <= exp10 < 15:
                fixed = Decimal(mp.nstr(number, 30)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
                text = f"{fixed:f}".rstrip("0").rstrip(".")
                return "0" if text in ("", "-0") else text
            mantissa = float(abs(number) / mp.mpf(10) ** exp10)
        mantissa = round(mantissa, 3)
        if mantissa >= 10:  # 9.9996 rounds up to the next power of ten
            mantissa, exp10 = mantissa / 10, exp10 + 1
        sign = "-" if number < 0 else ""
        return f"{sign}{mantissa:.3f}".rstrip("0").rstrip(".") + f"e{exp10:+d}"
