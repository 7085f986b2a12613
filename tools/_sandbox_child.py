"""What runs inside the Python sandbox's child process (see `tools.python_sandbox`).

The parent starts `python -I _sandbox_child.py CONFIG`, CONFIG being JSON. The child then:
1. sets itself up while it may still be root, with no untrusted input read yet: cuts `sys.path`
   down to the Python installation, imports what user code may use (`ALLOWED_MODULES`,
   `PRELOAD`), unloads what user code must not reach (`BLOCKED_IMPORTS`), sets its resource
   limits, drops to the unprivileged uid and installs the audit hook (`make_guard`);
2. writes `READY` on the result pipe, then reads the code from stdin (an 8-byte big-endian length,
   then UTF-8);
3. runs the code like a notebook cell (a last expression's value is shown, and so is a last
   assignment's) and writes one JSON object, {"value": …, "error": …}, on the
   result pipe. What the code prints goes to stdout, which is not the result pipe.

It imports only the standard library (the server's code is not importable here) and does nothing
when imported, so the parent can take its protocol constants from it.

Left out: the audit hook is a second line, not a boundary (see `tools.python_sandbox`). After
the uid drop, a module that was not imported ahead can be imported only if the new uid can read
its file; where the interpreter lies under /root, that rules out the rest of the standard library.

Long (over 300 lines) because it runs alone in the child: it may import nothing of this project,
so its limits, audit hook and run loop are all here.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import gc
import importlib
import io
import json
import math
import os
import posix
import resource
import signal
import site
import sys
import sysconfig
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, BinaryIO

READY = b"ready\n"
HEADER_BYTES = 8  # the code's length, sent before it
MAX_CODE_BYTES = 1 << 20
CODE_NAME = "<python>"  # the file name user code runs under: how its lines are found in tracebacks
MAX_ERROR_CHARS = 300
OPEN_FILES = 256

# Promised to user code: the child does not start without them.
ALLOWED_MODULES = (
    *("math", "statistics", "fractions", "decimal", "itertools", "collections", "datetime"),
    *("re", "json", "sympy"),
)
# Imported ahead when present: what sympy imports lazily, common helpers, and codecs that
# `str.encode` would otherwise load on first use.
PRELOAD = (
    *("dataclasses", "heapq", "secrets", "logging", "hashlib", "xml.dom.minidom", "random"),
    *("importlib.resources", "string", "textwrap", "bisect", "functools", "operator", "array"),
    *("cmath", "numbers", "copy", "pprint", "enum", "typing", "time", "calendar", "unicodedata"),
    *("struct", "base64", "binascii", "csv", "difflib", "zlib", "zoneinfo", "graphlib", "inspect"),
    *("pathlib", "shutil", "tempfile", "glob"),
    *("encodings.latin_1", "encodings.ascii", "encodings.utf_16", "encodings.utf_32"),
    *("encodings.utf_8_sig", "encodings.cp1252", "encodings.unicode_escape", "encodings.idna"),
)
# Any dotted part of a module name: processes, sockets, raw memory, subinterpreters (which would
# not have the audit hook), shared memory outside the working directory.
BLOCKED_IMPORTS = frozenset(
    {
        *("ctypes", "_ctypes", "_posixsubprocess", "subprocess", "multiprocessing"),
        *("_multiprocessing", "_posixshmem", "socket", "_socket", "_ssl", "_xxsubinterpreters"),
        *("_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase", "_ctypes_test"),
    }
)
# Audit events refused outright (Python 3.11's names). Each one starts a process, signals one,
# changes the environment or limits, or reaches objects that would let code undo the hook.
DENIED_EVENTS = frozenset(
    {
        *("os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen"),
        *("pty.spawn", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "os.symlink"),
        *("os.link", "os.chown", "shutil.chown", "resource.setrlimit", "resource.prlimit"),
        *("sys.addaudithook", "sys.settrace", "sys.setprofile", "gc.get_objects"),
        *("gc.get_referrers", "gc.get_referents", "code.__new__", "fcntl.ioctl"),
        *("cpython.PyInterpreterState_New", "webbrowser.open"),
    }
)
DENIED_PREFIXES = ("socket.", "ctypes.", "syslog.")
READ_EVENTS = frozenset({"os.listdir", "os.scandir", "os.getxattr", "os.listxattr"})
WRITE_EVENTS = frozenset(
    {
        *("os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.utime", "os.chmod"),
        *("os.setxattr", "os.removexattr", "sqlite3.connect"),
    }
)
DEVICES = frozenset({"/dev/null", "/dev/urandom"})
EXTRA_READ_DIRS = ("/usr/share/zoneinfo",)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def main() -> None:
    config = json.loads(sys.argv[1])
    workdir: str = config["workdir"]
    read_dirs = library_dirs()
    _trim_import_path(read_dirs)
    for name in ALLOWED_MODULES:
        importlib.import_module(name)
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _unload_blocked_modules()
    _set_limits(config)
    if config["uid"] is not None:
        _drop_privileges(config["uid"], config["gid"])
    cpu_s = config["cpu_s"]

    def cpu_exceeded(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"CPU time limit of {cpu_s:g} s exceeded")

    signal.signal(signal.SIGXCPU, cpu_exceeded)  # as PID 1 of a namespace, SIGXCPU needs a handler
    stdout = sys.stdout
    if isinstance(stdout, io.TextIOWrapper):
        stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    sys.stderr = stdout  # one stream, in the order written
    sys.dont_write_bytecode = True
    sys.addaudithook(make_guard(workdir, read_dirs))
    result_fd: int = config["result_fd"]
    _write_all(result_fd, READY)
    code = read_code(sys.stdin.buffer)
    if code is None:  # the server went away before sending any code
        os._exit(0)
    report = run(code, config["value_chars"], config["memory_bytes"] >> 20)
    with contextlib.suppress(Exception):  # the code may have closed or replaced it
        stdout.flush()
    _write_all(result_fd, json.dumps(report).encode())
    os._exit(0)  # no atexit handlers or threads of the user's


def library_dirs() -> tuple[str, ...]:
    """The installation's library folders (and time-zone data): readable, never writable."""
    paths = sysconfig.get_paths()
    found = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    found += [*site.getsitepackages(), *EXTRA_READ_DIRS]
    return tuple(sorted({os.path.realpath(p) for p in found if os.path.isdir(p)}))


def _within(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == folder or path.startswith(folder + "/") for folder in folders)


def _trim_import_path(read_dirs: tuple[str, ...]) -> None:
    # `-I` already leaves out the script's folder and the working directory; this also drops the
    # editable install's finder, which would map `tools` and `agent_server` to the server's source.
    sys.path[:] = [p for p in sys.path if p and _within(os.path.realpath(p), read_dirs)]
    editable = [f for f in sys.meta_path if getattr(f, "__module__", "").startswith("__editable_")]
    for finder in editable:
        sys.meta_path.remove(finder)
    sys.path_importer_cache.clear()


def _unload_blocked_modules() -> None:
    # sympy's own imports load ctypes and subprocess. Unloaded, a later `import` of them meets the
    # audit hook. `fork_exec` starts a process without any audit event, so every reference to it
    # goes too (the `subprocess` module object stays reachable through sympy's attributes).
    fork_exec = getattr(sys.modules.get("_posixsubprocess"), "fork_exec", None)
    for name in list(sys.modules):
        if not BLOCKED_IMPORTS.isdisjoint(name.split(".")):
            del sys.modules[name]
    if fork_exec is not None:
        for holder in gc.get_referrers(fork_exec):
            if isinstance(holder, dict):
                for key in [k for k, v in holder.items() if v is fork_exec]:
                    del holder[key]


def _set_limits(config: dict[str, Any]) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(usage.ru_utime + usage.ru_stime + config["cpu_s"])  # imports have used some
    _limit(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the soft limit, SIGKILL a second later
    _limit(resource.RLIMIT_AS, config["memory_bytes"])
    _limit(resource.RLIMIT_FSIZE, config["file_bytes"])
    _limit(resource.RLIMIT_NPROC, config["processes"])  # threads count too
    _limit(resource.RLIMIT_NOFILE, OPEN_FILES)
    _limit(resource.RLIMIT_CORE, 0)


def _limit(kind: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    _, current = resource.getrlimit(kind)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(kind, (soft, hard))


def _drop_privileges(uid: int, gid: int) -> None:
    # Real, effective and saved ids all change, which also clears every capability: no way back.
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid,) * 3 or os.getresgid() != (gid,) * 3 or os.getgroups():
        raise SystemExit("could not drop privileges")


def make_guard(workdir: str, read_dirs: tuple[str, ...]) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook. Paths are resolved (symbolic links included) before they are checked:
    files may be written, and folders opened, only under `workdir`; files under `read_dirs` may be
    read; imports must not name a blocked module, nor load a file from outside `read_dirs`."""
    # Everything the hook uses is bound here and is immutable, and the hook looks up no global or
    # builtin name: code that rebinds `os.path` or `builtins`, or finds the hook's frame in a
    # traceback, cannot change what it checks. `posix` functions raise no audit events.
    lstat, stat, readlink, decode = posix.lstat, posix.stat, posix.readlink, bytes.decode
    str_, bytes_, int_, type_ = str, bytes, int, type
    refuse, refuse_import, os_error = PermissionError, ImportError, OSError
    blocked, denied, denied_prefixes = BLOCKED_IMPORTS, DENIED_EVENTS, DENIED_PREFIXES
    read_events, write_events, devices = READ_EVENTS, WRITE_EVENTS, DEVICES
    write_flags, home_prefix = _WRITE_FLAGS, workdir + "/"
    watched = denied | read_events | write_events | {"open", "import", "os.chdir", "os.rename"}

    def guard(event: str, args: tuple[Any, ...]) -> None:
        if event not in watched:
            if event.startswith(denied_prefixes):
                raise refuse(f"sandbox: {event} is not allowed")
            return
        if event in denied:
            raise refuse(f"sandbox: {event} is not allowed")
        first = args[0]
        checks: tuple[tuple[Any, str], ...]
        if event == "import":
            if type_(first) is not str_:
                raise refuse_import("sandbox: odd module name")
            if not blocked.isdisjoint(first.split(".")):
                raise refuse_import(f"sandbox: importing {first} is not allowed")
            if args[1] is None:
                return
            checks = ((args[1], "library"),)
        elif event == "open":
            if type_(first) is int_:  # an open file descriptor
                return
            if type_(args[2]) is not int_:
                raise refuse("sandbox: odd open flags")
            checks = ((first, "write" if args[2] & write_flags else "read"),)
        elif event == "os.rename":
            checks = ((first, "write"), (args[1], "write"))
        elif event == "os.chdir":
            checks = ((first, "home"),)
        elif event in read_events:
            if first is None or type_(first) is int_:  # the working folder or an open folder
                return
            checks = ((first, "list"),)
        else:
            if type_(first) is int_ and event == "os.truncate":  # needs a file open for writing
                return
            checks = ((first, "write"),)
        for path, need in checks:
            if type_(path) is bytes_:
                path = decode(path, "utf-8", "surrogateescape")
            if type_(path) is not str_:
                raise refuse(f"sandbox: {event} needs a plain path")
            if not path.startswith("/"):
                path = home_prefix + path  # the working folder, which cannot change
            done: list[str] = []
            todo = path.split("/")
            todo.reverse()
            hops = 0
            while todo:
                name = todo.pop()
                if name == "" or name == ".":
                    continue
                if name == "..":
                    if done:
                        done.pop()
                    continue
                done.append(name)
                here = "/" + "/".join(done)
                try:
                    mode = lstat(here).st_mode
                except os_error:  # missing or unreadable: the rest is taken as written
                    continue
                if mode & 0o170000 == 0o120000:
                    hops += 1
                    if hops > 40:
                        raise refuse("sandbox: too many symbolic links")
                    target = readlink(here)
                    done.pop()
                    if target.startswith("/"):
                        done.clear()
                    more = target.split("/")
                    more.reverse()
                    todo.extend(more)
            real = "/" + "/".join(done)
            at_home = real == workdir or real.startswith(home_prefix)
            in_library = False
            for folder in read_dirs:
                if real == folder or real.startswith(folder + "/"):
                    in_library = True
            if need == "read" and in_library:
                try:
                    in_library = stat(real).st_mode & 0o170000 != 0o040000  # no folder handles
                except os_error:
                    pass
            allowed = (
                (need == "home" and real == workdir)
                or (need == "write" and (at_home or real in devices))
                or (need == "read" and (at_home or in_library or real in devices))
                or (need == "list" and (at_home or in_library))
                or (need == "library" and in_library)
            )
            if not allowed:
                if need == "library":
                    raise refuse_import(f"sandbox: cannot import from {real}")
                raise refuse(f"sandbox: {event} of {real} is not allowed")

    return guard


def read_code(stream: BinaryIO) -> str | None:
    """The code the parent sent, or None if the pipe closed first."""
    header = stream.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        return None
    size = int.from_bytes(header, "big")
    body = stream.read(size) if size <= MAX_CODE_BYTES else b""
    return body.decode("utf-8", errors="replace") if len(body) == size else None


def run(code: str, value_chars: int, memory_mib: int) -> dict[str, str | None]:
    """Run `code` like a notebook cell: the repr of a last expression, or `name = repr` when the
    code ends by assigning one name (as smolagents and codejail show it: a program that ends in
    `result = a * b` has computed something), cut to `value_chars`; or one line saying what went
    wrong."""
    try:
        tree = ast.parse(code, CODE_NAME)
        last = tree.body[-1] if tree.body else None
        tail = None
        assigned = _assigned_name(last)
        if isinstance(last, ast.Expr):
            tree.body.pop()
            tail = compile(ast.Expression(last.value), CODE_NAME, "eval")
        elif assigned is not None and last is not None:
            name = ast.copy_location(ast.Name(assigned, ast.Load()), last)  # errors: its line
            tail = compile(ast.fix_missing_locations(ast.Expression(name)), CODE_NAME, "eval")
        body = compile(tree, CODE_NAME, "exec")
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        return {"value": None, "error": f"{type(exc).__name__}: {exc.msg}{where}"}
    except Exception as exc:  # a NUL character; nesting too deep for the parser
        return {"value": None, "error": describe(exc, memory_mib)}
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(body, namespace)
        value = None if tail is None else eval(tail, namespace)
        shown = None if value is None else repr(value)
        if shown is not None and assigned is not None:
            shown = f"{assigned} = {shown}"
        text = None if shown is None else shown[:value_chars]
    except SystemExit as exc:
        return {"value": None, "error": _exit_message(exc.code)}
    except BaseException as exc:  # the model's code may raise anything; it all goes back to it
        return {"value": None, "error": describe(exc, memory_mib)}
    return {"value": text, "error": None}


def _assigned_name(statement: ast.stmt | None) -> str | None:
    """The one name a statement assigns (`x = …`, `x: int = …`, `x += …`), else None."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target: ast.expr | None = statement.targets[0]
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        target = statement.target
    elif isinstance(statement, ast.AugAssign):
        target = statement.target
    else:
        target = None
    return target.id if isinstance(target, ast.Name) else None


def _exit_message(code: object) -> str | None:
    if code is None or code == 0:
        return None  # a clean exit: what was printed is the result
    if isinstance(code, int):
        return f"exited with status {int(code)}"
    return f"exited with status 1: {' '.join(str(code).split())[:MAX_ERROR_CHARS]}"


def describe(exc: BaseException, memory_mib: int) -> str:
    """One line for the model, e.g. `ZeroDivisionError: division by zero (line 1)`."""
    try:
        message = " ".join(str(exc)[: MAX_ERROR_CHARS * 2].split())
    except Exception:  # a user-defined __str__ that fails
        message = ""
    if isinstance(exc, MemoryError) and not message:
        message = f"out of memory (the limit is {memory_mib} MiB)"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    line = _user_line(exc.__traceback__)
    return text if line is None else f"{text} (line {line})"


def _user_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:  # the innermost frame of the user's code
        if tb.tb_frame.f_code.co_filename == CODE_NAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    main()
