"""The Python tool: runs the model's code in a throwaway, locked-down process, for calls like
`[Python("print(2**10)")]` or a fenced program (`calls`: the program-aided strategy).

The result reads like a notebook cell's: what the code printed, then the repr of its last line if
that is an expression, or `name = repr` if it assigns one name (`total = price * 3`). An
exception comes back as one line the model can act on,
`ZeroDivisionError: division by zero (line 1)`, and so do a timeout and `sys.exit(3)`. The code
can import `tools._sandbox_child.ALLOWED_MODULES` (math, statistics, fractions, sympy, …).

Layers of defence, outside in; each one assumes that those after it have failed:
1. Another process. The server never runs the code: each call gets a fresh `python -I` process,
   used once and then killed with its whole process group. A spare started ahead, which has
   already imported sympy, makes a call fast; a new spare starts in the background after each.
2. Namespaces, where `unshare` works (probed once): a new network namespace, with no interface
   up; a new PID namespace with its own /proc, so no other process can be seen or signalled, and
   the kernel kills everything left when the first process dies. And `setpriv --no-new-privs`:
   no setuid program can hand privileges back.
3. No privileges. Under a root server the child drops for good to nobody (65534) after importing
   its modules and before reading the code, so it can neither signal the server nor write its
   files. It drops itself, rather than being started as nobody, because the interpreter may lie
   where nobody cannot read it (here, under /root).
4. Limits: CPU time, address space, file size, processes, open files, no core files. The wall
   clock is the parent's, which kills the process group when time is up.
5. Little to find: an empty environment, a fresh working directory deleted afterwards, an import
   path cut down to the Python installation.
6. An audit hook in the child (`tools._sandbox_child.make_guard`) refuses processes, signals,
   sockets, ctypes, environment changes, blocked imports, and files outside the working directory
   (the installation's library files may be read).
7. The parent reads at most a fixed number of bytes and checks the result's shape: a child that
   prints 100 MB or forges its result costs the server neither memory nor an exception.

Left out: an audit hook is not a boundary on its own (PEP 578). Bytecode built with `marshal`, or
a bug in C code, can switch it off, and some calls raise no audit event (`os.mkfifo`,
`os.pidfd_open`, `_imp.create_builtin`). The OS layers are what hold then, and they have gaps:
no seccomp filter; no cgroup (memory is capped as address space, not resident memory); no private
view of the file system (what is world-readable can be read); no disk quota (the size of a file is
capped, not the number of files); and the process limit counts every process of the uid on the
machine. A server that is not root cannot drop privileges: its child keeps the server's uid, so
only the PID namespace keeps it from signalling the server and only the hook keeps it from the
server's files. Without `unshare`, only the hook keeps it off the network. Where nobody cannot
read the standard library (as here), the code can import only the standard modules that the
child imported ahead (`tools._sandbox_child.PRELOAD`).

Long (over 300 lines) because the parent's side of the sandbox (spawning, limits, time-outs,
the warm child's protocol) is one security boundary, read as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tools import _sandbox_child as child_side
from tools.base import MAX_RESULT_CHARS, NoWarmUp, ToolError, ToolTimeout, cap_output

SANDBOX_UID = SANDBOX_GID = 65534  # nobody, nogroup: what a root server's child becomes
MAX_CODE_CHARS = 20_000
MIN_MEMORY_BYTES = 128 << 20  # the child uses about 70 MB once sympy is imported
# A cold start imports sympy (a quarter of a second here, much more on a busy machine). The wait is
# not part of a call's time limit, which is for the code itself.
STARTUP_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 16
NO_OUTPUT = "(no output: print something, or end with an expression or an assignment)"
GARBLED = "the sandbox sent back a garbled result"

_prefixes: dict[int, tuple[str, ...]] = {}  # euid -> the command line the child starts under
_probe_lock = threading.Lock()


def launch_prefix() -> tuple[str, ...]:
    """What the child is started under: `setpriv --no-new-privs` (a setuid program cannot give it
    privileges back) and `unshare` (new network, PID and mount namespaces), whichever of them
    work here; probed once per process (and user)."""
    euid = os.geteuid()
    with _probe_lock:
        if euid not in _prefixes:
            _prefixes[euid] = _probe_prefix(euid)
        return _prefixes[euid]


def _probe_prefix(euid: int) -> tuple[str, ...]:
    setpriv, unshare = shutil.which("setpriv"), shutil.which("unshare")
    no_new_privs = (setpriv, "--no-new-privs") if setpriv else ()
    # Root needs no user namespace; anyone else needs one to be allowed the others.
    user = () if euid == 0 else ("--user", "--map-current-user")
    namespaces = (
        (unshare, *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--")
        if unshare
        else ()
    )
    for prefix in (no_new_privs + namespaces, namespaces, no_new_privs):
        if prefix and _starts_under(prefix):
            return prefix
    return ()


def _starts_under(prefix: tuple[str, ...]) -> bool:
    try:
        probe = subprocess.run(
            [*prefix, _interpreter(), "-I", "-c", "pass"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={},
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _interpreter() -> str:
    if not sys.executable:
        raise RuntimeError("the Python sandbox needs sys.executable to start its processes")
    return sys.executable


@dataclass
class _Child:
    """One started sandbox process: used for one call, then destroyed."""

    process: subprocess.Popen[bytes]
    results: io.FileIO  # the read end of the result pipe
    workdir: Path

    def kill(self) -> None:
        """SIGKILL the process group (unshare, the interpreter, anything they started)."""
        if self.process.returncode is None:  # once reaped, the group id may belong to another
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def destroy(self) -> None:
        """Kill, reap, close the pipes and delete the working directory (this blocks)."""
        self.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.results):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass(frozen=True)
class _Run:
    printed: bytes  # the start of what the code wrote to stdout and stderr
    report: bytes  # what came on the result pipe after READY
    status: int  # the exit status; negative for a signal


class _NotStarted(Exception):
    """The child died or stalled before it could take the code."""


class PythonSandbox(NoWarmUp):
    """Runs a snippet of Python in a fresh, locked-down process per call."""

    name = "Python"
    description = (
        "Runs Python code; returns what it prints and the value of its last expression "
        "(math, statistics, fractions, decimal, datetime, re, json and sympy can be imported)."
    )
    example = "sum(range(1, 101))"
    parameters = None  # a free-text argument

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,  # wall clock per call, kept by this process
        cpu_s: float = 5.0,  # CPU seconds per call (RLIMIT_CPU), beyond what imports used
        memory_bytes: int = 1 << 30,  # address space (RLIMIT_AS): sympy needs about 70 MB of it
        max_output_chars: int = MAX_RESULT_CHARS,
        file_bytes: int = 1 << 20,  # largest file the code may write (RLIMIT_FSIZE)
        processes: int = 32,  # processes and threads of the sandbox's uid (RLIMIT_NPROC)
        pool_size: int = 1,  # spare processes started ahead
        namespaces: bool = True,  # use `setpriv` and `unshare` where they work; False is for tests
    ) -> None:
        if memory_bytes < MIN_MEMORY_BYTES:
            raise ValueError(f"memory_bytes must be at least {MIN_MEMORY_BYTES}")
        if max_output_chars < 100:
            raise ValueError("max_output_chars must be at least 100")
        self.timeout_s = timeout_s
        self.cpu_s = cpu_s
        self.memory_bytes = memory_bytes
        self.max_output_chars = max_output_chars
        self.file_bytes = file_bytes
        self.processes = processes
        self.pool_size = pool_size
        self.namespaces = namespaces
        self._lock = threading.Lock()
        self._spares: list[_Child] = []
        self._starting = 0
        self._generation = 0  # bumped by close(): spares started before it are not kept
        self._fillers: set[threading.Thread] = set()

    async def __call__(self, argument: str) -> str:
        if not argument.strip():
            raise ToolError("empty code")
        if len(argument) > MAX_CODE_CHARS:
            raise ToolError(f"code too long ({len(argument)} characters, limit {MAX_CODE_CHARS})")
        spare = self._take_spare()
        if spare is not None:
            with contextlib.suppress(_NotStarted):  # it died while it waited: take a fresh one
                return await self._use(spare, argument)
        prefix = await asyncio.to_thread(self._prefix)  # the first time, this probes
        # Started on the loop, as asyncio's own subprocesses are: mkdtemp, chown and a fork/exec
        # are quick, and a child started in a thread could be lost if the call is cancelled.
        child = self._start(prefix)
        try:
            return await self._use(child, argument)
        except _NotStarted as exc:
            raise RuntimeError(f"the Python sandbox did not start: {exc}") from exc

    def start(self) -> None:
        """Start the spare processes in the background, so even the first call is warm."""
        self._refill()

    def close(self) -> None:
        """Stop the spare processes; a later call starts new ones."""
        with self._lock:
            self._generation += 1
            spares, self._spares = self._spares, []
            fillers = list(self._fillers)
        for thread in fillers:  # each is at most a probe and a few fork/execs from done
            thread.join(timeout=PROBE_TIMEOUT_S)
        for child in spares:
            child.destroy()

    def __enter__(self) -> PythonSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _prefix(self) -> tuple[str, ...]:
        return launch_prefix() if self.namespaces else ()

    def _start(self, prefix: tuple[str, ...]) -> _Child:
        workdir = Path(tempfile.mkdtemp(prefix="python-sandbox-")).resolve()
        as_root = os.geteuid() == 0
        read_fd, write_fd = os.pipe()
        try:
            if as_root:
                os.chown(workdir, SANDBOX_UID, SANDBOX_GID)
            config = {
                "result_fd": write_fd,
                "workdir": str(workdir),
                "uid": SANDBOX_UID if as_root else None,
                "gid": SANDBOX_GID,
                "cpu_s": self.cpu_s,
                "memory_bytes": self.memory_bytes,
                "file_bytes": self.file_bytes,
                "processes": self.processes,
                "value_chars": self.max_output_chars + 1,  # one more, so a cut shows
            }
            script = str(Path(child_side.__file__).resolve())
            process = subprocess.Popen(
                [*prefix, _interpreter(), "-I", script, json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                cwd=workdir,
                env={},
                start_new_session=True,  # its own process group, killed as one
            )
        except BaseException:
            os.close(read_fd)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            os.close(write_fd)
        return _Child(process, open(read_fd, "rb", buffering=0), workdir)

    def _take_spare(self) -> _Child | None:
        while True:
            with self._lock:
                spare = self._spares.pop(0) if self._spares else None
            if spare is None or spare.process.poll() is None:
                return spare
            spare.destroy()  # it died while it waited; it is reaped, so this is quick

    def _refill(self) -> None:
        """Start spares in a background thread until `pool_size` are there or on their way."""
        with self._lock:
            wanted = self.pool_size - len(self._spares) - self._starting
            if wanted <= 0:
                return
            self._starting += wanted
            thread = threading.Thread(
                target=self._fill,
                args=(wanted, self._generation),
                name="python-sandbox-spares",
                daemon=True,
            )
            self._fillers.add(thread)
        thread.start()

    def _fill(self, count: int, generation: int) -> None:
        try:
            for _ in range(count):
                child = None
                # A failure here shows again, with its reason, when a call starts its own child.
                with contextlib.suppress(Exception):
                    child = self._start(self._prefix())
                with self._lock:
                    self._starting -= 1
                    keep = child is not None and generation == self._generation
                    if child is not None and keep:
                        self._spares.append(child)
                if child is not None and not keep:
                    child.destroy()
        finally:
            with self._lock:
                self._fillers.discard(threading.current_thread())

    async def _use(self, child: _Child, code: str) -> str:
        """Run `code` in `child`, then destroy it; meanwhile a new spare starts."""
        self._refill()
        try:
            run = await self._run(child, code)
        finally:
            child.kill()
            await asyncio.to_thread(child.destroy)
        return self._result(run)

    async def _run(self, child: _Child, code: str) -> _Run:
        loop = asyncio.get_running_loop()
        output, results = asyncio.StreamReader(CHUNK_BYTES), asyncio.StreamReader(CHUNK_BYTES)
        stdin, stdout = child.process.stdin, child.process.stdout
        assert stdin is not None and stdout is not None
        transports: list[asyncio.BaseTransport] = []
        try:
            for reader, pipe in ((output, stdout), (results, child.results)):
                protocol = functools.partial(asyncio.StreamReaderProtocol, reader)
                transport, _ = await loop.connect_read_pipe(protocol, pipe)
                transports.append(transport)
            await _handshake(child, output, results)
            data = code.encode("utf-8", errors="surrogatepass")
            payload = len(data).to_bytes(child_side.HEADER_BYTES, "big") + data
            try:
                async with asyncio.timeout(self.timeout_s):
                    try:
                        await asyncio.to_thread(_send, stdin, payload)
                    except OSError as exc:
                        raise _NotStarted(f"its stdin is closed ({exc})") from exc
                    # Output is 1 to 4 bytes a character; a JSON report escapes a character into
                    # at most 12 bytes, and adds the error line.
                    printed, report = await asyncio.gather(
                        _read_capped(output, 4 * self.max_output_chars + 4),
                        _read_capped(results, 12 * self.max_output_chars + 8192),
                    )
            except TimeoutError:
                raise ToolTimeout(f"timed out after {self.timeout_s:g} s") from None
            child.kill()  # both pipes are closed, so it has exited or ought to have
            status = await asyncio.to_thread(child.process.wait)
            return _Run(printed, report, status)
        finally:
            for opened in transports:
                opened.close()
            await asyncio.sleep(0)  # let the transports let go of their pipes

    def _result(self, run: _Run) -> str:
        report = _parse_report(run.report)
        if report is None:
            raise ToolError(self._no_report(run.status))
        value, error = report
        if error is not None:
            raise ToolError(" ".join(error.split())[: child_side.MAX_ERROR_CHARS + 20])
        printed = run.printed.decode("utf-8", errors="replace").rstrip()
        limit = self.max_output_chars
        if value is None:
            return cap_output(printed, limit) if printed else NO_OUTPUT
        if not printed:
            return cap_output(value, limit)
        value = cap_output(value, limit // 2)  # long output still leaves room for the value
        return cap_output(printed, limit - len(value) - 1) + "\n" + value

    def _no_report(self, status: int) -> str:
        if status >= 0:
            return f"the process ended without a result (exit status {status})"
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        if -status in (signal.SIGKILL, signal.SIGXCPU):
            return f"the process was killed ({name}), probably by its CPU limit of {self.cpu_s:g} s"
        return f"the process crashed ({name})"


async def _handshake(
    child: _Child, output: asyncio.StreamReader, results: asyncio.StreamReader
) -> None:
    """Wait for READY; if it does not come, say why with the last line the child printed."""
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            ready = await results.readexactly(len(child_side.READY))
    except (asyncio.IncompleteReadError, TimeoutError):
        ready = b""
    if ready == child_side.READY:
        return
    child.kill()
    said = b""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            said = await _read_capped(output, CHUNK_BYTES)
    lines = said.decode("utf-8", errors="replace").strip().splitlines() or ["no output"]
    raise _NotStarted(lines[-1][:300])


async def _read_capped(reader: asyncio.StreamReader, cap: int) -> bytes:
    """Everything up to EOF, keeping only the first `cap` bytes: memory stays bounded."""
    kept = bytearray()
    while chunk := await reader.read(CHUNK_BYTES):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


def _send(stdin: IO[bytes], payload: bytes) -> None:
    with stdin:
        stdin.write(payload)


def _parse_report(data: bytes) -> tuple[str | None, str | None] | None:
    """(value, error) from the child's report; None if it sent none."""
    if not data:
        return None
    try:
        report = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ToolError(GARBLED) from exc
    match report:
        case {"value": str() | None as value, "error": str() | None as error} if len(report) == 2:
            return value, error
    raise ToolError(GARBLED)
