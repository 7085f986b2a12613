"""The Calculator tool: arithmetic and a little algebra for calls like `[Calculator(400/1400)]`.

The argument is rewritten into Python expression syntax (`^` is a power, `15%` is 0.15,
`15% of 80` is 12, `×` and `÷` work, a lone `=` makes an equation, `$` and a trailing `=` are
dropped), parsed with `ast.parse` and walked against a whitelist into a tree of plain tuples.
Nothing the model wrote is evaluated: the tree goes to a warm worker process (`tools._worker`)
that builds sympy objects node by node under a size bound, a memory cap and a time limit.

Results read like a calculator's: `0.2857`, `7006652`, `1.268e+30`, `x**3/3`, `[-2, 2]`, `True`.
Complex results are shown with `I` (`sqrt(-4)` gives `2*I`); angles are in radians; `round`
rounds half away from zero.

Left out: implicit multiplication (`2x`), thousands separators (a comma separates arguments),
units, multi-letter variables, systems of equations, matrices and complex-number input.

Long (over 300 lines) because the tool and the worker process's lifecycle (start, time limit,
replacement after a crash) are one unit.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import multiprocessing
import re
import threading
import warnings
from decimal import Decimal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from tools._worker import ARITY, CONSTANTS, Node, is_symbol_name, serve
from tools.base import NoWarmUp, ToolError, ToolTimeout, cap_output

# The worker's address-space cap: far above any sane question, far below the machine's memory.
MEMORY_BYTES = 1 << 30
# Starting a worker imports sympy (about half a second); allow for a busy machine. This wait is
# not part of a call's time limit, which is for the computation itself.
STARTUP_TIMEOUT_S = 60.0

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.Pow: "**"}
_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_OPERATOR_TEXT: dict[type[ast.AST], str] = {
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.Not: "not",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_SYNTAX_NAMES: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.List: "list",
    ast.Tuple: "tuple (commas only separate function arguments)",
    ast.Dict: "dict",
    ast.Set: "set",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
    ast.JoinedStr: "string",
    ast.BoolOp: "and/or",
    ast.IfExp: "conditional expression",
    ast.NamedExpr: "assignment",
    ast.Starred: "starred argument",
    ast.Slice: "slice",
}

# Text rewrites that come before parsing. Percent: a `%` is a percent sign when no operand follows
# it (`15%`, `15% of 80`, `80 * 15%`, `15%**2`) and modulo otherwise (`10 % 3`). The percent sign
# becomes the postfix `[...]`, which the walker reads as "divide by 100"; a postfix keeps the
# operator's binding tight, as a percent sign's is.
_CHARACTERS = str.maketrans(
    {"×": "*", "÷": "/", "−": "-", "≤": "<=", "≥": ">=", "≠": "!=", "$": None},
)
_TRAILING_EQUALS = re.compile(r"(?<![=<>!])=\s*$")
_PERCENT_OF = re.compile(r"%\s*of\b")
_PERCENT = re.compile(r"%(?=\s*(?:$|[-+*/)\],=<>!%]))")
_LONE_EQUALS = re.compile(r"(?<![=<>!:])=(?!=)")
# `round(2.5, ndigits=1)` stays a keyword argument (and is refused as one), while
# `solve(x=3)` is an equation: variables are single letters, keywords are longer.
_KEYWORD_BEFORE = re.compile(r"[(,]\s*[A-Za-z_]\w+\s*$")


def parse(argument: str, max_chars: int = 500) -> Node:
    """Check `argument` and turn it into the worker's tuple tree; `ToolError` if refused."""
    if len(argument) > max_chars:
        raise ToolError(f"input too long ({len(argument)} characters, limit {max_chars})")
    text = _rewrite(argument)
    if not text:
        raise ToolError("empty expression")
    try:
        with warnings.catch_warnings():
            # Odd escapes in string literals warn while parsing; strings are refused below anyway.
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
        return _walk(tree, text)
    except SyntaxError as exc:
        raise ToolError(f"syntax error: {exc.msg}") from exc
    except ValueError as exc:  # e.g. a NUL character
        raise ToolError(f"syntax error: {exc}") from exc
    except RecursionError as exc:
        raise ToolError("expression nested too deeply") from exc


def _rewrite(argument: str) -> str:
    text = argument.translate(_CHARACTERS).replace("^", "**").strip()
    text = _TRAILING_EQUALS.sub("", text).strip()
    text = _PERCENT_OF.sub("[...]*", text)
    text = _PERCENT.sub("[...]", text)

    def equals(match: re.Match[str]) -> str:
        return "=" if _KEYWORD_BEFORE.search(text, 0, match.start()) else "=="

    return _LONE_EQUALS.sub(equals, text)


def _walk(node: ast.AST, source: str) -> Node:
    match node:
        case ast.Expression(body=body):
            return _walk(body, source)
        case ast.Constant(value=bool() | None as value):
            raise ToolError(f"unknown name {value!r}")
        case ast.Constant(value=int() as value):
            return ("int", value)
        case ast.Constant(value=float() as value):
            # The literal's own digits, so 0.1 stays exactly one tenth.
            literal = ast.get_source_segment(source, node) or repr(value)
            sign, digits, exp10 = Decimal(literal).as_tuple()
            mantissa = int("".join(map(str, digits)))
            return ("dec", -mantissa if sign else mantissa, int(exp10))
        case ast.Constant(value=value):
            kind = "string" if isinstance(value, str | bytes) else type(value).__name__
            raise ToolError(f"unsupported syntax: {kind}")
        case ast.Name(id=name):
            if name in CONSTANTS:
                return ("const", name)
            if is_symbol_name(name):
                return ("sym", name)
            if name in ARITY:
                raise ToolError(f"{name} is a function: call it like {name}(…)")
            raise ToolError(f"unknown name {name!r}")
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return ("neg", _walk(operand, source))
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _walk(operand, source)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            return ("bin", _BINARY[type(op)], _walk(left, source), _walk(right, source))
        case ast.Subscript(value=value, slice=ast.Constant(value=marker)) if marker is Ellipsis:
            return ("pct", _walk(value, source))  # made from `%` by _rewrite
        case ast.Compare(left=left, ops=[op], comparators=[right]) if type(op) in _COMPARE:
            return ("cmp", _COMPARE[type(op)], _walk(left, source), _walk(right, source))
        case ast.Compare(ops=[_, _, *_]):
            raise ToolError("unsupported syntax: chained comparison")
        case ast.Call():
            return _call(node, source)
        case ast.BinOp(op=op) | ast.UnaryOp(op=op) | ast.Compare(ops=[op]):
            text = _OPERATOR_TEXT.get(type(op), type(op).__name__)
            raise ToolError(f"unsupported operator: {text}")
    name = _SYNTAX_NAMES.get(type(node), type(node).__name__)
    raise ToolError(f"unsupported syntax: {name}")


def _call(node: ast.Call, source: str) -> Node:
    if not isinstance(node.func, ast.Name):
        raise ToolError("unsupported syntax: only named functions can be called")
    name = node.func.id
    if name not in ARITY:
        raise ToolError(f"unknown name {name!r}")
    if node.keywords:
        raise ToolError("keyword arguments are not supported")
    fewest, most = ARITY[name]
    if not fewest <= len(node.args) <= most:
        wanted = f"{fewest}" if fewest == most else f"{fewest} to {most}"
        raise ToolError(f"{name} takes {wanted} argument(s), got {len(node.args)}")
    args = []
    for index, arg in enumerate(node.args):
        if name == "integrate" and index == 1 and isinstance(arg, ast.Tuple):
            args.append(_limits(arg, source))
        else:
            args.append(_walk(arg, source))
    return ("call", name, tuple(args))


def _limits(node: ast.Tuple, source: str) -> Node:
    match node.elts:
        case [ast.Name(id=name), low, high] if is_symbol_name(name):
            return ("limits", name, _walk(low, source), _walk(high, source))
    raise ToolError("integration limits are written (x, low, high)")


class Calculator(NoWarmUp):
    """Arithmetic and algebra through sympy, in a warm worker process with a time limit."""

    name = "Calculator"
    description = "Arithmetic and algebra: 400/1400, 15% of 80, sqrt(2), solve(x**2 - 4, x)."
    example = "400/1400"
    parameters = None  # a free-text argument

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,  # per computation; a worker that overruns is killed and replaced
        max_chars: int = 500,  # a real calculation is a line; anything longer is not one
        max_digits: int = 10_000,  # bound on any exact number's size, checked before computing
    ) -> None:
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.max_digits = max_digits
        # One worker per instance, one computation at a time on its pipe.
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._warming: threading.Thread | None = None

    async def __call__(self, argument: str) -> str:
        tree = parse(argument, self.max_chars)
        # The pipe wait blocks, so it runs in a thread and the event loop goes on serving.
        return cap_output(await asyncio.to_thread(self._evaluate, tree))

    def start(self) -> None:
        """Start the worker in the background: its sympy import is the first call's 0.4 s."""

        def warm() -> None:
            with self._lock, contextlib.suppress(ToolError):  # the first call will say why
                self._ensure_worker()

        self._warming = threading.Thread(target=warm, name="calculator-warm-up", daemon=True)
        self._warming.start()

    def close(self) -> None:
        """Stop the worker process, if any; a later call starts a new one."""
        if self._warming is not None:  # else a warm-up still to come would outlive the close
            self._warming.join()
            self._warming = None
        with self._lock:
            self._stop_worker()

    def __enter__(self) -> Calculator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _evaluate(self, tree: Node) -> str:
        with self._lock:
            conn = self._ensure_worker()
            try:
                conn.send(tree)
            except OSError:  # it died while idle (killed, say): this call need not fail
                self._stop_worker()
                conn = self._ensure_worker()
                conn.send(tree)
            try:
                if not conn.poll(self.timeout_s):
                    self._stop_worker()
                    raise ToolTimeout(f"timed out after {self.timeout_s:g} s")
                status, text = conn.recv()
            except (EOFError, OSError) as exc:
                self._stop_worker()
                raise ToolError("the calculation crashed its worker process") from exc
            if status == "fatal":  # the worker exits after this reply; don't reuse it
                self._stop_worker()
        if status not in ("ok", "error", "fatal"):
            raise RuntimeError(f"calculator worker sent an unknown status {status!r}")
        if status != "ok":
            raise ToolError(text)
        return str(text)

    def _ensure_worker(self) -> Connection:
        if self._process is not None and self._conn is not None and self._process.is_alive():
            return self._conn
        self._stop_worker()
        # forkserver: the worker is forked from a small, single-threaded server process, not from
        # this one (threads, a loaded model), so forking is safe and its memory cap is its own.
        # As with any forkserver or spawn child, the program's main module must be safe to
        # import again (the usual `if __name__ == "__main__":` guard).
        context = multiprocessing.get_context("forkserver")
        conn, child_conn = context.Pipe()
        process = context.Process(
            target=serve,
            args=(child_conn, self.max_digits, MEMORY_BYTES),
            name="calculator-worker",
            daemon=True,
        )
        process.start()
        child_conn.close()
        self._process, self._conn = process, conn
        try:
            ready = conn.recv() if conn.poll(STARTUP_TIMEOUT_S) else None
        except (EOFError, OSError):
            ready = None
        if ready != ("ready", ""):
            self._stop_worker()
            raise RuntimeError("the calculator worker process did not start")
        return conn

    def _stop_worker(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            process.kill()
            process.join(timeout=5)
            if process.exitcode is not None:
                process.close()

    def _worker_pid(self) -> int | None:
        """The worker's process id, for tests and diagnostics."""
        return None if self._process is None else self._process.pid
