"""Tests for the Python sandbox: notebook-style results, limits, escape attempts and the guard.

Each escape test checks two things: that the attempt failed, and that the server (this process)
is untouched: its sentinel file unchanged and its secret unseen. Attempts that would kill the
server if they worked run from a separate server process, so a failure cannot take pytest down.
"""

from __future__ import annotations

import ast
import asyncio
import dis
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tools.base
from tools._sandbox_child import make_guard
from tools.base import Tool, ToolError, ToolTimeout
from tools.python_sandbox import NO_OUTPUT, PythonSandbox, _Child, launch_prefix

AS_ROOT = os.geteuid() == 0
SECRET_VAR = "AGENT_SANDBOX_TEST_SECRET"
WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


@pytest.fixture(scope="module")
def sandbox() -> Iterator[PythonSandbox]:
    with PythonSandbox() as python:
        yield python


@pytest.fixture(scope="module")
def tight() -> Iterator[PythonSandbox]:
    # A CPU limit well under the wall clock, so a busy machine still hits the CPU limit first.
    limits = {"cpu_s": 1, "memory_bytes": 256 << 20, "file_bytes": 64 << 10}
    with PythonSandbox(timeout_s=20, max_output_chars=500, **limits) as python:
        yield python


def run(sandbox: PythonSandbox, code: str) -> str:
    return asyncio.run(sandbox(code))


def refusal(sandbox: PythonSandbox, code: str) -> str:
    with pytest.raises(ToolError) as caught:
        run(sandbox, code)
    return str(caught.value)


def attempts(sandbox: PythonSandbox, *snippets: str) -> list[str]:
    """Run each snippet in one sandbox process; how each ended: 'ran' or 'Error: message'."""
    code = (
        "outcomes = []\n"
        f"for snippet in {list(snippets)!r}:\n"
        "    try:\n"
        "        exec(snippet, {})\n"
        "        outcomes.append('ran')\n"
        "    except Exception as exc:\n"
        "        outcomes.append(type(exc).__name__ + ': ' + str(exc)[:80])\n"
        "outcomes"
    )
    outcomes = ast.literal_eval(run(sandbox, code))
    assert isinstance(outcomes, list)
    return outcomes


def is_import_refusal(outcome: str) -> bool:
    # The hook refuses the import, unless the module's file cannot even be read by the sandbox's
    # uid (where the standard library lies under /root, say) and it is simply not found.
    return outcome.startswith(("ImportError: sandbox: importing ", "ModuleNotFoundError: "))


@dataclass
class Server:
    """What the sandbox must not reach: a file of the server's, a secret in its environment."""

    sentinel: Path
    secret: str

    def assert_untouched(self, *results: str) -> None:
        assert self.sentinel.read_text() == "original"
        assert os.environ[SECRET_VAR] == self.secret
        assert not any(self.secret in result for result in results)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("original")
    monkeypatch.setenv(SECRET_VAR, f"secret-{os.urandom(8).hex()}")
    state = Server(sentinel, os.environ[SECRET_VAR])
    yield state
    state.assert_untouched()


# --- normal use -------------------------------------------------------------------------------


def test_it_is_a_tool_whose_example_works(sandbox: PythonSandbox) -> None:
    assert isinstance(sandbox, Tool)
    assert sandbox.name == "Python" and "\n" not in sandbox.description
    assert run(sandbox, sandbox.example) == "5050"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("print('hi')\n2**10", "hi\n1024"),
        ("x = 6\nx * 7", "42"),
        ("x = 1\nx += 1", "x = 2"),  # a program that ends in an assignment shows its value
        ("price = 0.75 / 3\ncost: float = price * 17", "cost = 4.25"),
        ("print('total')\nresult = 6 * 7", "total\nresult = 42"),
        ("x = [1]\nx[0] = 2", NO_OUTPUT),  # not one name
        ("a, b = 1, 2", NO_OUTPUT),
        ("x = 1\ndel x", NO_OUTPUT),
        ("print('π ≈', 3.14159)\nNone", "π ≈ 3.14159"),
        ("import sys\nprint('to stderr', file=sys.stderr)\n'ab' * 2", "to stderr\n'abab'"),
    ],
)
def test_output_then_the_last_expression_or_assignment(
    sandbox: PythonSandbox, code: str, expected: str
) -> None:
    assert run(sandbox, code) == expected


def test_sympy_including_its_lazy_imports(sandbox: PythonSandbox) -> None:
    assert run(sandbox, "import sympy\nsympy.factorint(360)") == "{2: 3, 3: 2, 5: 1}"
    code = "import sympy\nx = sympy.Symbol('x')\nsympy.integrate(sympy.sin(x)**2, x)"
    assert run(sandbox, code) == "x/2 - sin(x)*cos(x)/2"


def test_the_allowed_standard_modules(sandbox: PythonSandbox) -> None:
    code = (
        "import statistics, fractions, decimal, datetime, json, re, math, itertools, collections\n"
        "from fractions import Fraction\n"
        "print(statistics.mean([1, 2, 4]), Fraction(1, 3) + 1, decimal.Decimal('0.1') * 3)\n"
        "print(datetime.date(2024, 3, 1) - datetime.timedelta(days=1), json.dumps({'a': [1]}))\n"
        "print(re.findall(r'\\d+', 'a1b22'), math.comb(5, 2), list(itertools.pairwise('abc')))\n"
        "collections.Counter('abca').most_common(1), 'é'.encode('latin-1')"
    )
    assert run(sandbox, code) == (
        "2.3333333333333335 4/3 0.3\n"
        '2024-02-29 {"a": [1]}\n'
        "['1', '22'] 10 [('a', 'b'), ('b', 'c')]\n"
        "([('a', 2)], b'\\xe9')"
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("1 +", "SyntaxError: invalid syntax (line 1)"),
        ("x = 1\n1/0", "ZeroDivisionError: division by zero (line 2)"),
        ("undefined", "NameError: name 'undefined' is not defined (line 1)"),
        ("def f():\n    raise ValueError('bad\\nvalue')\nf()", "ValueError: bad value (line 2)"),
        ("import sys\nsys.exit(3)", "exited with status 3"),
        ("raise SystemExit('no way')", "exited with status 1: no way"),
        ("import os\nos._exit(4)", "the process ended without a result (exit status 4)"),
    ],
)
def test_errors_come_back_as_one_line(sandbox: PythonSandbox, code: str, message: str) -> None:
    assert refusal(sandbox, code) == message


def test_a_clean_exit_keeps_the_output(sandbox: PythonSandbox) -> None:
    assert run(sandbox, "print('bye')\nraise SystemExit(0)") == "bye"


def test_empty_or_oversized_code_is_refused_without_a_process(sandbox: PythonSandbox) -> None:
    assert refusal(sandbox, "") == "empty code"
    assert refusal(sandbox, "  \n") == "empty code"
    assert refusal(sandbox, "1" * 30_000).startswith("code too long")


def test_output_is_capped_and_the_value_still_shows(sandbox: PythonSandbox) -> None:
    result = run(sandbox, "print('x' * 10_000)")
    assert len(result) <= sandbox.max_output_chars and result.endswith("(output cut)")
    result = run(sandbox, "print('y' * 10_000)\n42")
    assert len(result) <= sandbox.max_output_chars and result.endswith("(output cut)\n42")


# --- limits -----------------------------------------------------------------------------------


def test_the_wall_clock_limit_kills_without_blocking_the_loop() -> None:
    with PythonSandbox(timeout_s=1) as quick:
        assert run(quick, "1") == "1"  # start-up is not part of the time limit

        async def ticks_during_an_endless_call() -> tuple[int, float]:
            task = asyncio.create_task(quick("while True:\n    pass"))
            ticks, started = 0, time.monotonic()
            while not task.done():
                await asyncio.sleep(0.01)
                ticks += 1
            with pytest.raises(ToolTimeout, match="timed out after 1 s"):
                await task
            return ticks, time.monotonic() - started

        ticks, elapsed = asyncio.run(ticks_during_an_endless_call())
        assert 1 <= elapsed < 6 and ticks > 20
        assert run(quick, "6 * 7") == "42"


def test_cpu_memory_and_file_limits(tight: PythonSandbox) -> None:
    assert refusal(tight, "while True: pass") == (
        "TimeoutError: CPU time limit of 1 s exceeded (line 1)"
    )
    assert refusal(tight, "x = bytearray(10**10)") == (
        "MemoryError: out of memory (the limit is 256 MiB) (line 1)"
    )
    grow = "x = []\nwhile True:\n    x.append(bytearray(10**6))"
    assert refusal(tight, grow).startswith("MemoryError: out of memory")
    write = "open('big.bin', 'wb').write(b'x' * (1 << 20))"
    assert refusal(tight, write) == "OSError: [Errno 27] File too large (line 1)"
    assert run(tight, "6 * 7") == "42"


def test_huge_output_costs_the_server_no_memory(sandbox: PythonSandbox) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = "import os, sys\nprint('x' * 10**8)\nsys.stdout.flush()\nos.write(1, b'y' * 10**8)\n7"
    result = run(sandbox, code)
    assert result.endswith("(output cut)\n7") and len(result) <= sandbox.max_output_chars
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 50


def test_fork_bombs_fail(sandbox: PythonSandbox) -> None:
    outcomes = attempts(
        sandbox,
        "import os\nwhile True: os.fork()",
        "import os\nwhile True: os.posix_spawn('/bin/true', ['true'], {})",
        "import subprocess\nwhile True: subprocess.Popen(['true'])",
        "import os\nos.execv('/bin/sh', ['sh'])",
        "import threading, time\n"
        "for _ in range(500): threading.Thread(target=time.sleep, args=(1,)).start()",
    )
    assert outcomes == [
        "PermissionError: sandbox: os.fork is not allowed",
        "PermissionError: sandbox: os.posix_spawn is not allowed",
        "ImportError: sandbox: importing subprocess is not allowed",
        "PermissionError: sandbox: os.exec is not allowed",
        "RuntimeError: can't start new thread",  # the process limit
    ]


# --- escape attempts --------------------------------------------------------------------------


def test_subclass_walks_reach_nothing_that_works(sandbox: PythonSandbox, server: Server) -> None:
    marker = server.sentinel.with_name("marker")
    find = "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '{}'][0]"
    outcomes = attempts(
        sandbox,
        "for cls in ().__class__.__base__.__subclasses__():\n"
        "    g = getattr(getattr(cls, '__init__', None), '__globals__', {})\n"
        "    if 'system' in g and 'getpid' in g:\n"
        f"        g['system']('touch {marker}')\n"
        "        break\n"
        "else:\n"
        "    raise LookupError('no os')",
        f"{find.format('Popen')}(['touch', '{marker}'])",
        # subprocess starts processes through fork_exec, which raises no audit event.
        f"g = {find.format('Popen')}.__init__.__globals__\ng['_fork_exec']",
        f"{find.format('CDLL')}(None)",
        "import importlib\nimportlib.import_module('_posixsubprocess')",
    )
    assert outcomes[:4] == [
        "PermissionError: sandbox: os.system is not allowed",
        "PermissionError: sandbox: subprocess.Popen is not allowed",
        "KeyError: '_fork_exec'",
        "PermissionError: sandbox: ctypes.dlopen is not allowed",
    ]
    assert is_import_refusal(outcomes[4])
    assert not marker.exists()
    server.assert_untouched(*outcomes)


def test_frame_walks_find_no_server_and_no_way_out(sandbox: PythonSandbox, server: Server) -> None:
    walk = (
        "import sys\n"
        "def gen():\n"
        "    yield\n"
        "g = gen()\n"
        "frames, f = [g.gi_frame], sys._getframe()\n"
        "while f is not None:\n"
        "    frames.append(f)\n"
        "    f = f.f_back\n"
        "seen = ' '.join(repr(f.f_globals) + repr(f.f_locals) for f in frames)\n"
        "try:\n"
        f"    frames[-1].f_globals['os'].system('touch {server.sentinel}')\n"
        "    outcome = 'ran'\n"
        "except PermissionError as exc:\n"
        "    outcome = str(exc)\n"
        # In halves: the source itself is in a frame's locals.
        f"{server.secret[:9]!r} + {server.secret[9:]!r} in seen, len(frames) > 2, outcome"
    )
    result = run(sandbox, walk)
    assert result == "(False, True, 'sandbox: os.system is not allowed')"
    server.assert_untouched(result)


def test_files_outside_the_working_folder(sandbox: PythonSandbox, server: Server) -> None:
    sentinel = str(server.sentinel)
    outcomes = attempts(
        sandbox,
        "open('/etc/passwd').read()",
        "open('/proc/self/root/etc/passwd').read()",
        "import pathlib\npathlib.Path('/etc/passwd').read_text()",
        "import os\nos.open(b'/etc/passwd', os.O_RDONLY)",
        f"open({tools.base.__file__!r}).read()",  # the server's own source
        "import os\nos.listdir('/')",
        "import os\nos.symlink('/etc/passwd', 'link')",
        "import os\nos.chdir('/')",
        f"open({sentinel!r}, 'w').write('pwned')",
        f"import pathlib\npathlib.Path({sentinel!r}).write_text('pwned')",
        f"import os\nos.remove({sentinel!r})",
        f"import os\nos.rename({sentinel!r}, 'stolen')",
        f"import shutil\nshutil.copy({sentinel!r}, 'copy')",
        "import tools.base",
    )
    assert all(o.startswith("PermissionError: sandbox: ") for o in outcomes[:-1]), outcomes
    assert outcomes[-1] == "ModuleNotFoundError: No module named 'tools'"
    assert attempts(sandbox, "open('mine.txt', 'w').write('ok')\nopen('mine.txt').read()") == [
        "ran"
    ]
    server.assert_untouched(*outcomes)


def test_the_servers_environment_is_not_visible(sandbox: PythonSandbox, server: Server) -> None:
    assert run(sandbox, f"import os\nos.environ.get({SECRET_VAR!r})") == NO_OUTPUT
    names = ast.literal_eval(run(sandbox, "import os\nsorted(os.environ)"))
    assert set(names) <= {"LC_CTYPE"}  # which Python sets itself, for a UTF-8 locale
    outcomes = attempts(
        sandbox,
        "open('/proc/self/environ').read()",
        "import os\nopen(f'/proc/{os.getppid()}/environ').read()",
        f"open('/proc/{os.getpid()}/environ').read()",
    )
    assert all(o.startswith("PermissionError: sandbox: open of /proc/") for o in outcomes)
    server.assert_untouched(*outcomes)


def test_no_processes_no_sockets_no_ctypes(sandbox: PythonSandbox, server: Server) -> None:
    marker = server.sentinel.with_name("marker")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        outcomes = attempts(
            sandbox,
            f"import subprocess\nsubprocess.run(['touch', '{marker}'])",
            f"import importlib\nimportlib.import_module('subprocess').run(['touch', '{marker}'])",
            "import multiprocessing",
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
            "import importlib\nimportlib.import_module('_socket')",
            "import ctypes",
            "import importlib\nimportlib.import_module('_ctypes')",
        )
        time.sleep(0.2)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    assert all(is_import_refusal(o) for o in outcomes), outcomes
    assert not marker.exists()
    server.assert_untouched(*outcomes)


SERVER_SCRIPT = """
import asyncio, os, sys
from tools.base import ToolError
from tools.python_sandbox import PythonSandbox

async def main() -> None:
    with PythonSandbox(namespaces=sys.argv[1] == "namespaces", pool_size=0) as sandbox:
        for code in sys.argv[2:]:
            try:
                result = await sandbox(code.replace("SERVER_PID", str(os.getpid())))
                print("result:", result, flush=True)
            except ToolError as exc:
                print("refused:", exc, flush=True)
    print("server survived", flush=True)

asyncio.run(main())
"""
KILLS = (
    "import os\nos.kill(os.getppid(), 9)",
    "import os\nos.kill(SERVER_PID, 9)",
    "import os\nos.killpg(os.getpgid(SERVER_PID), 9)",
    # pidfd_open and pidfd_send_signal raise no audit events: the kernel alone says no.
    "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(SERVER_PID), 9)",
)


@pytest.mark.parametrize(
    "mode",
    [
        "namespaces",
        # Without namespaces the server is visible: only the uid drop keeps it safe.
        pytest.param("plain", marks=pytest.mark.skipif(not AS_ROOT, reason="needs root")),
    ],
)
def test_killing_the_server_fails(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), mode, *KILLS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert lines[-1] == "server survived"
    assert [line.split(":")[0] for line in lines[:-1]] == ["refused"] * len(KILLS)
    assert lines[0] == "refused: PermissionError: sandbox: os.kill is not allowed (line 2)"
    kernel_says = "ProcessLookupError" if mode == "namespaces" else "PermissionError: [Errno 1]"
    assert lines[3].startswith(f"refused: {kernel_says}")


def test_the_os_layers_hold_without_the_hook() -> None:
    prefix = launch_prefix()
    if "--net" not in prefix:
        # CI's machines have namespaces: there, losing them must fail, not skip quietly.
        if os.environ.get("CI"):
            pytest.fail("unshare does not work on this CI machine: the sandbox lost its OS layers")
        pytest.skip("unshare does not work here")
    probe = (
        "import os, socket\n"
        "print(os.getpid(), os.getppid(), [p for p in os.listdir('/proc') if p.isdigit()])\n"
        "print('NoNewPrivs:\\t1' in open('/proc/self/status').read())\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', PORT), timeout=2)\n"
        "except OSError as exc:\n"
        "    print(exc.strerror)"
    )
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = str(listener.getsockname()[1])
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", probe.replace("PORT", port)],
            env={},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert done.stdout.splitlines() == [
        "1 0 ['1']",  # alone in its PID namespace
        "True" if "--no-new-privs" in prefix else "False",
        "Network is unreachable",  # its network namespace has no interface up
    ]


def test_a_forged_result_is_refused_cleanly(sandbox: PythonSandbox) -> None:
    forge = (
        "import os\n"
        "for fd in range(3, 300):\n"
        "    try:\n"
        '        os.write(fd, b\'{"value": "forged", "error": null}\' + b\'x\' * 10**6)\n'
        "    except OSError:\n"
        "        pass"
    )
    assert refusal(sandbox, forge) == "the sandbox sent back a garbled result"
    fake = 'print(\'ready\\n{"value": "forged", "error": null}\')'
    assert run(sandbox, fake) == 'ready\n{"value": "forged", "error": null}'


def test_a_normal_call_still_works_after_the_escapes(sandbox: PythonSandbox) -> None:
    assert run(sandbox, "sum(range(1, 101))") == "5050"


@pytest.mark.skipif(not AS_ROOT, reason="only a root server drops privileges")
def test_under_root_the_code_runs_as_nobody(sandbox: PythonSandbox) -> None:
    assert run(sandbox, "import os\nos.getresuid(), os.getresgid(), os.getgroups()") == (
        "((65534, 65534, 65534), (65534, 65534, 65534), [])"
    )


# --- processes --------------------------------------------------------------------------------


def wait_for_spare(python: PythonSandbox) -> _Child:
    deadline = time.monotonic() + 30
    while not python._spares and time.monotonic() < deadline:
        time.sleep(0.05)
    return python._spares[0]


def test_cold_and_warm_calls_each_get_a_fresh_process_and_folder() -> None:
    with PythonSandbox(pool_size=1) as python:
        assert not python._spares
        first = run(python, "import os\nos.getcwd()")  # cold: no spare yet
        spare = wait_for_spare(python)
        second = run(python, "import os\nos.getcwd()")  # warm
        assert Path(ast.literal_eval(second)) == spare.workdir != Path(ast.literal_eval(first))
        assert not spare.workdir.exists() and not Path(ast.literal_eval(first)).exists()
        assert spare.process.returncode is not None
        spare = wait_for_spare(python)
    assert not python._spares and spare.process.returncode is not None  # close() stopped it
    with PythonSandbox(pool_size=0) as python:
        assert run(python, "2 + 2") == "4"
        assert not python._spares


def test_concurrent_calls_each_get_their_own_process(sandbox: PythonSandbox) -> None:
    async def three() -> list[str]:
        code = "import os, time\ntime.sleep(0.3)\nos.getcwd()"
        return list(await asyncio.gather(*(sandbox(code) for _ in range(3))))

    assert len(set(asyncio.run(three()))) == 3


def test_a_dead_spare_is_replaced_and_a_cancelled_call_cleans_up() -> None:
    with PythonSandbox(pool_size=1) as python:
        assert run(python, "1") == "1"
        dead = wait_for_spare(python)
        dead.kill()  # it dies while it waits
        dead.process.wait()
        assert run(python, "2") == "2"
        spare = wait_for_spare(python)

        async def cancel_a_call() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(python("import time\ntime.sleep(60)"), 1)

        asyncio.run(cancel_a_call())
        assert spare.process.returncode is not None and not spare.workdir.exists()


# --- the guard on its own ---------------------------------------------------------------------


@pytest.fixture
def guard(tmp_path: Path) -> Callable[[str, tuple[Any, ...]], None]:
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "lib" / "mod.py").write_text("")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "link").symlink_to("/etc/passwd")
    return make_guard(str(tmp_path / "home"), (str(tmp_path / "lib"),))


class Sly(str):
    """A path that is not what it seems."""


@pytest.mark.parametrize(
    ("event", "args", "allowed"),
    [
        ("open", ("HOME/new.txt", "w", WRITE), True),
        ("open", ("new.txt", "w", WRITE), True),
        ("open", ("sub/../new.txt", "w", WRITE), True),
        ("open", ("../new.txt", "w", WRITE), False),
        ("open", ("HOME/link", "r", os.O_RDONLY), False),
        ("open", ("LIB/mod.py", "r", os.O_RDONLY), True),
        ("open", (b"LIB/mod.py", "r", os.O_RDONLY), True),
        ("open", ("LIB/mod.py", "w", WRITE), False),
        ("open", ("LIB/pkg", None, os.O_RDONLY), False),  # no folder handles outside home
        ("open", ("LIB/../home/x", "w", WRITE), True),
        ("open", ("/etc/passwd", "r", os.O_RDONLY), False),
        ("open", ("/proc/self/root/etc/passwd", "r", os.O_RDONLY), False),
        ("open", (Sly("new.txt"), "w", WRITE), False),
        ("open", (3, "r", os.O_RDONLY), True),
        ("open", ("/dev/null", "w", WRITE), True),
        ("os.listdir", ("LIB/pkg",), True),
        ("os.listdir", ("/",), False),
        ("os.listdir", (None,), True),
        ("os.chdir", ("HOME",), True),
        ("os.chdir", ("LIB",), False),
        ("os.remove", ("HOME/x", -1), True),
        ("os.remove", ("LIB/mod.py", -1), False),
        ("os.rename", ("HOME/a", "LIB/b", -1, -1), False),
        ("os.chmod", (3, 0o777, None), False),
        ("import", ("json", None, [], [], []), True),
        ("import", ("mod", "LIB/mod.py", None, None, None), True),
        ("import", ("evil", "HOME/evil.so", None, None, None), False),
        ("import", ("socket", None, [], [], []), False),
        ("import", ("x._posixsubprocess", "LIB/mod.py", None, None, None), False),
        ("os.system", ("id",), False),
        ("os.kill", (1, 9), False),
        ("socket.connect", (None, ("127.0.0.1", 80)), False),
        ("ctypes.dlopen", (None,), False),
        ("sys.addaudithook", (), False),
        ("builtins.id", (1,), True),
    ],
)
def test_the_guards_decisions(
    guard: Callable[[str, tuple[Any, ...]], None],
    tmp_path: Path,
    event: str,
    args: tuple[Any, ...],
    allowed: bool,
) -> None:
    def place(arg: Any) -> Any:
        if type(arg) in (str, bytes):
            home, lib = str(tmp_path / "home"), str(tmp_path / "lib")
            if isinstance(arg, bytes):
                return arg.replace(b"HOME", home.encode()).replace(b"LIB", lib.encode())
            return arg.replace("HOME", home).replace("LIB", lib)
        return arg

    placed = tuple(place(arg) for arg in args)
    if allowed:
        guard(event, placed)
    else:
        with pytest.raises((PermissionError, ImportError), match="^sandbox: "):
            guard(event, placed)


def test_the_guard_looks_up_no_names_when_it_runs(
    guard: Callable[[str, tuple[Any, ...]], None],
) -> None:
    # Rebinding a builtin or a module global in the child cannot change what the guard checks.
    names = {i.opname for i in dis.get_instructions(guard)}
    assert not names & {"LOAD_GLOBAL", "LOAD_NAME"}
