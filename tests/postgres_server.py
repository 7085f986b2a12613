"""A real PostgreSQL server for the tests: Debian's package, started in a temporary folder.

`make test` installs the package when it is missing (`make postgres`); the server runs on a free
loopback port, as the `postgres` user when the tests run as root (PostgreSQL refuses root), and
is stopped (fast shutdown) when the block ends. Each test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from agent_server.model_server import free_port

SUPERUSER = "agent"


def bindir() -> Path | None:
    """Where Debian's PostgreSQL programs are (they are not on PATH), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if found:
        return Path(found[0]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@contextlib.contextmanager
def running() -> Iterator[str]:
    """A fresh cluster on loopback while the block runs; yields its base URL."""
    programs = bindir()
    if programs is None:
        raise RuntimeError("PostgreSQL is not installed: `make postgres` installs Debian's")
    # Its own folder under /tmp: pytest's are private to our user, which `postgres` is not.
    folder = Path(tempfile.mkdtemp(prefix="agent-postgres-"))
    as_user = _as_postgres_user(folder)
    data, port = folder / "data", free_port()
    _run(as_user, programs / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8")
    start = (programs / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-t", "60")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run(as_user, *start, "-o", options, "start")
    try:
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}"
    finally:
        _run(as_user, programs / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A new, empty database on the server at `url`; its URL."""
    import psycopg

    with psycopg.connect(f"{url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # a name of the test's, not input
    return f"{url}/{name}"


def _as_postgres_user(folder: Path) -> tuple[str, ...]:
    if os.geteuid() != 0:
        return ()
    shutil.chown(folder, "postgres", "postgres")
    return ("runuser", "-u", "postgres", "--")


def _run(prefix: tuple[str, ...], *args: object) -> None:
    command = [*prefix, *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
