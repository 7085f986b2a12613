"""Where the store's tables live: one SQLite file (the default) or a PostgreSQL server.

    open_database(url, default_path)  the `Database` that `AGENT_DATABASE_URL` names
    SqliteDatabase                    one file, one connection, on one thread
    PostgresDatabase                  a pool of connections, on as many threads

The store writes its queries once, with `?` placeholders, against `Sql`; a database runs a
function of an `Sql` on its own thread(s), so the event loop never waits on a disk or a socket,
and brings its schema up to date when opened (before serving), from its dialect's migrations.

- SQLite: WAL mode (readers never block the writer), `synchronous=FULL` (a commit is fsynced:
  even a power cut loses no finished turn; at one write per answer the fsync costs nothing
  anyone could notice), the schema's version in `PRAGMA user_version`. One thread owns the only
  connection, so calls run in the order they were made; `BEGIN IMMEDIATE` takes the write lock
  at the start of a transaction, which keeps that true with a second process on the file.
- PostgreSQL (psycopg 3 and its pool): the version in a one-row table, migrations under an
  advisory lock so replicas starting together migrate once. A connection the server dropped is
  replaced by the pool; a call that fails on one is not retried (a turn may have been written).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from agent_server.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

T = TypeVar("T")
Migrations = Sequence[Sequence[str]]  # migrations[i] takes the schema from version i to i + 1
POSTGRES_THREADS = 4  # connections, and threads using them: replicas are many, each needs few
_MIGRATION_LOCK = 0x6167656E74  # "agent": the advisory lock replicas take to migrate


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Sql(Protocol):
    """One connection, as the store's queries see it; `?` placeholders in every dialect."""

    def execute(self, query: str, params: Sequence[Any] = ()) -> Cursor: ...
    def transaction(self, body: Callable[[], T]) -> T: ...


class Database(Protocol):
    url: str  # for messages; without a password

    async def run(self, fn: Callable[[Sql], T]) -> T: ...
    def close(self) -> None: ...


def open_database(
    url: str | None, default_path: Path, migrations: dict[str, Migrations]
) -> Database:
    """`postgresql://…` or `sqlite:///path`, or None for the SQLite file at `default_path`."""
    if not url:
        return SqliteDatabase(default_path, migrations["sqlite"])
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url.removeprefix("sqlite:///")), migrations["sqlite"])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, migrations["postgresql"])
    raise ConfigError(
        f"AGENT_DATABASE_URL must start with postgresql:// or sqlite:///: {url!r:.80}"
    )


class SqliteDatabase:
    def __init__(self, path: Path, migrations: Migrations) -> None:
        """Open (or create) the file and migrate it; waits until done."""
        self.path = path
        self.url = f"sqlite:///{path}"
        self._migrations = migrations
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._closed = False
        try:
            # Made on the database's thread and only ever used there, through `run`.
            self._conn = self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise

    async def run(self, fn: Callable[[Sql], T]) -> T:
        if self._closed:
            raise RuntimeError("the store is closed")
        sql = _SqliteSql(self._conn)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, sql)

    def close(self) -> None:
        """Finish the queued calls, then close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._executor.submit(self._conn.close)
        self._executor.shutdown(wait=True)

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: transactions are explicit (BEGIN IMMEDIATE … COMMIT), never implied.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the store {self.path}: {exc}") from exc
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            if mode != "wal":
                raise ConfigError(f"{self.path}: SQLite would not use WAL mode here (got {mode!r})")
            sql = _SqliteSql(conn)
            # The version is read inside the write transaction: two processes opening a new
            # file at once migrate it once.
            sql.transaction(lambda: self._migrate(conn))
        except sqlite3.DatabaseError as exc:  # e.g. the file is not a database
            raise ConfigError(f"{self.path} is not a usable SQLite file: {exc}") from exc

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        target = _apply(self._migrations, version, conn.execute, str(self.path))
        if version < target:
            conn.execute(f"PRAGMA user_version = {target}")  # an int of ours, not input


class _SqliteSql:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(query, tuple(params))

    def transaction(self, body: Callable[[], T]) -> T:
        self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
        try:
            result = body()
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return result


class PostgresDatabase:
    def __init__(self, url: str, migrations: Migrations, connect_timeout_s: float = 10.0) -> None:
        """Connect and migrate; waits until done. `ConfigError` if the server can't be used."""
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.url = _without_password(url)
        self._migrations = migrations
        self._connect_timeout_s = connect_timeout_s
        # A lost server or no free connection in time; a query's own error is not one of them.
        self._unavailable: tuple[type[Exception], ...] = (psycopg.OperationalError, PoolTimeout)
        self._closed = False
        self._pool: ConnectionPool = ConnectionPool(
            url,
            min_size=1,
            max_size=POSTGRES_THREADS,
            # Autocommit: transactions are explicit (`Sql.transaction`), never implied.
            kwargs={"autocommit": True, "connect_timeout": max(int(connect_timeout_s), 1)},
            check=ConnectionPool.check_connection,  # a dropped connection is replaced
            open=False,
            name="agent-store",
        )
        self._executor = ThreadPoolExecutor(POSTGRES_THREADS, thread_name_prefix="postgres")
        try:
            # A connection of its own first: its error says why (refused, bad password), where
            # the pool's would only say it timed out.
            timeout = max(int(connect_timeout_s), 1)
            with psycopg.connect(url, autocommit=True, connect_timeout=timeout) as conn:
                sql = _PostgresSql(conn)
                sql.transaction(lambda: self._migrate(sql))
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except (PoolTimeout, psycopg.Error) as exc:
            self.close()
            raise ConfigError(f"cannot use the PostgreSQL database {self.url}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    async def run(self, fn: Callable[[Sql], T]) -> T:
        if self._closed:
            raise RuntimeError("the store is closed")

        def call() -> T:
            try:
                with self._pool.connection(timeout=self._connect_timeout_s) as conn:
                    return fn(_PostgresSql(conn))
            except self._unavailable as exc:
                raise StoreUnavailable(f"the database {self.url} is unavailable: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        """Finish the queued calls, then close the connections. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self._pool.close()

    def _migrate(self, sql: _PostgresSql) -> None:
        sql.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        sql.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = sql.execute("SELECT version FROM schema_version").fetchone()
        version = 0 if row is None else row[0]
        target = _apply(self._migrations, version, sql.execute, self.url)
        if row is None:
            sql.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
        elif version < target:
            sql.execute("UPDATE schema_version SET version = ?", (target,))


class _PostgresSql:
    def __init__(self, conn: Any) -> None:  # a psycopg.Connection
        self._conn = conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> Cursor:
        # psycopg's placeholder is %s; none of our queries holds a literal ? or %.
        cursor: Cursor = self._conn.execute(query.replace("?", "%s"), tuple(params))
        return cursor

    def transaction(self, body: Callable[[], T]) -> T:
        with self._conn.transaction():
            return body()


def _apply(
    migrations: Migrations, version: int, execute: Callable[[str], object], where: str
) -> int:
    if version > len(migrations):
        raise ConfigError(
            f"{where} has schema version {version}; this version knows up to {len(migrations)}"
        )
    for statements in migrations[version:]:
        for statement in statements:
            execute(statement)
    return len(migrations)


def _without_password(url: str) -> str:
    return re.sub(r"(//[^:/@]*):[^@]*@", r"\1:***@", url)
