"""Conversations and their turns, kept in one SQLite file.

    ConversationStore     create · get · list · delete · add_turn · history · close
    ConversationNotFound  (an AgentError) the id names no conversation, or is not an id at all

A turn is written once, when its answer is final, in one transaction that also bumps the
conversation's `updated_at` (and titles it from its first question): a crash mid-answer leaves
nothing behind, never half a turn. Every call runs on one dedicated thread that owns the only
connection, in the order the calls were made, so the event loop never waits on the disk and
positions within a conversation are handed out one at a time (`BEGIN IMMEDIATE` keeps that true
even with a second process on the same file).

The file is in WAL mode (readers never block the writer) with `synchronous=FULL`: a commit
is fsynced, so even a power cut loses no finished turn. The usual WAL choice, NORMAL, only saves
that fsync; here there is one write per answer and an answer takes seconds, so it would save
nothing anyone could notice. The schema's version is `PRAGMA user_version`; `_MIGRATIONS[i]`
takes a file from version i to i + 1, and opening runs the pending ones in one transaction that
also reads the version. Opening waits (it belongs in the lifespan, before serving); every other
call is async. Left out: search, editing or branching turns, a cap on conversations kept.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agent_server.errors import ConfigError, NotFound
from agent_server.events import FinalEvent

T = TypeVar("T")
Json = Mapping[str, Any]

_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as `create` makes them
TITLE_CHARS = 80

# Statements, not scripts: `executescript` would commit, and a migration is one transaction.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE conversations (
        id         TEXT PRIMARY KEY,
        title      TEXT,
        created_at TEXT NOT NULL,  -- ISO 8601, UTC, fixed width: sorts as text
        updated_at TEXT NOT NULL
    )""",
        "CREATE INDEX conversations_by_update ON conversations (updated_at)",
        """CREATE TABLE turns (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position   INTEGER NOT NULL,  -- 0, 1, 2 … within its conversation
        question   TEXT NOT NULL,
        answer     TEXT NOT NULL,     -- for the reader: calls removed
        text       TEXT NOT NULL,     -- as generated, with the spliced calls
        trace      TEXT NOT NULL CHECK (json_valid(trace)),
        mode       TEXT NOT NULL,
        model      TEXT NOT NULL,
        usage      TEXT NOT NULL CHECK (json_valid(usage)),
        timings    TEXT NOT NULL CHECK (json_valid(timings)),
        created_at TEXT NOT NULL,
        PRIMARY KEY (conversation_id, position)
    ) WITHOUT ROWID""",
    ),
    (  # WebGPT mode's quotes, which the answer's [n] markers cite
        "ALTER TABLE turns ADD COLUMN quotes TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(quotes))",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class ConversationNotFound(NotFound):
    """No conversation has this id (or it is not an id at all)."""


@dataclass(frozen=True)
class ConversationInfo:
    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    turns: int = 0


@dataclass(frozen=True)
class NewTurn:
    """A finished answer, as `add_turn` takes it."""

    question: str
    answer: str
    text: str
    trace: Sequence[Json] = ()
    mode: str = "toolformer"
    model: str = ""
    usage: Json = field(default_factory=dict)
    timings: Json = field(default_factory=dict)
    quotes: Sequence[Json] = ()

    @classmethod
    def from_final(cls, question: str, final: FinalEvent, *, mode: str, model: str) -> NewTurn:
        return cls(
            question=question,
            answer=final.answer,
            text=final.text,
            trace=tuple(asdict(r) for r in final.trace),
            mode=mode,
            model=model,
            usage=asdict(final.usage),
            timings=asdict(final.timings),
            quotes=tuple(asdict(q) for q in final.quotes),
        )


@dataclass(frozen=True)
class Turn:
    conversation_id: str
    position: int
    question: str
    answer: str
    text: str
    trace: tuple[Json, ...]
    mode: str
    model: str
    usage: Json
    timings: Json
    created_at: datetime
    quotes: tuple[Json, ...] = ()


@dataclass(frozen=True)
class Conversation:
    info: ConversationInfo
    turns: tuple[Turn, ...]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ConversationStore:
    def __init__(self, path: Path | str, clock: Callable[[], datetime] = _utc_now) -> None:
        """Open (or create) the file and bring its schema up to date; waits until done."""
        self.path = Path(path)
        self._clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._closed = False
        try:
            # Made on the store's thread and only ever used there, through `_run`.
            self._conn = self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise

    # -- the API: each call queues one function for the store's thread -------------------------

    async def create(self, title: str | None = None) -> ConversationInfo:
        cid, now = uuid.uuid4().hex, self._now()
        title = _title(title or "") or None
        await self._run(
            lambda c: c.execute(
                "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?,?,?,?)",
                (cid, title, now, now),
            )
        )
        return ConversationInfo(cid, title, _time(now), _time(now), 0)

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation with its turns in order, or None."""
        cid = _checked(conversation_id)
        return None if cid is None else await self._run(lambda c: _get(c, cid))

    async def list(self, limit: int = 50, offset: int = 0) -> builtins.list[ConversationInfo]:
        """Conversations, the most recently updated first."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        rows = await self._run(
            lambda c: c.execute(
                f"{_INFO} ORDER BY c.updated_at DESC, c.rowid DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        )
        return [_info(row) for row in rows]

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation and its turns; False if there was none."""
        cid = _checked(conversation_id)
        if cid is None:
            return False
        cursor = await self._run(
            lambda c: c.execute("DELETE FROM conversations WHERE id=?", (cid,))
        )
        return cursor.rowcount > 0

    async def add_turn(self, conversation_id: str, turn: NewTurn) -> Turn:
        """Append a finished turn, in one transaction; `ConversationNotFound` if there is none."""
        cid = _require(conversation_id)
        # Serialised here, before the transaction: a trace that is not JSON fails with nothing
        # begun. The columns after conversation_id and position, in order.
        values = (
            *(turn.question, turn.answer, turn.text, _json(list(turn.trace)), turn.mode),
            *(turn.model, _json(dict(turn.usage)), _json(dict(turn.timings)), self._now()),
            _json(list(turn.quotes)),
        )
        row = await self._run(lambda c: _transaction(c, lambda: _add(c, cid, values)))
        return _turn(row)

    async def history(self, conversation_id: str, max_turns: int) -> builtins.list[tuple[str, str]]:
        """(question, answer) of the last `max_turns` turns, oldest first."""
        cid = _require(conversation_id)
        return await self._run(lambda c: _history(c, cid, max(max_turns, 0)))

    def close(self) -> None:
        """Finish the queued calls, then close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._executor.submit(self._conn.close)
        self._executor.shutdown(wait=True)

    # -- on the store's thread ------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: transactions are explicit (BEGIN IMMEDIATE … COMMIT), never implied.
            # check_same_thread stays on: the connection is made and used on this thread only.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the conversation store {self.path}: {exc}") from exc
        try:
            _prepare(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("the conversation store is closed")
        conn = self._conn
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="microseconds")


_INFO = (
    "SELECT c.id, c.title, c.created_at, c.updated_at,"
    " (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id) FROM conversations c"
)
_TURN_COLUMNS = (
    "conversation_id, position, question, answer, text, trace, mode, model, usage, timings,"
    " created_at, quotes"
)


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        if mode != "wal":
            raise ConfigError(f"{path}: SQLite would not use WAL mode here (got {mode!r})")
        # The version is read inside the write transaction: two processes opening a new file
        # at once migrate it once.
        _transaction(conn, lambda: _migrate(conn, path))
    except sqlite3.DatabaseError as exc:  # e.g. the file is not a database
        raise ConfigError(f"{path} is not a usable SQLite file: {exc}") from exc


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has schema version {version}; this version knows up to {SCHEMA_VERSION}"
        )
    for statements in _MIGRATIONS[version:]:
        for statement in statements:
            conn.execute(statement)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # an int of ours, not input


def _transaction(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
    try:
        result = body()
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _add(conn: sqlite3.Connection, cid: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
    question, now = values[0], values[-2]
    # The update doubles as the existence check, and runs first so a failing insert undoes it.
    updated = conn.execute(
        "UPDATE conversations SET updated_at=?, title=COALESCE(title, ?) WHERE id=?",
        (now, _title(question) or None, cid),
    )
    if updated.rowcount == 0:
        raise ConversationNotFound(f"no conversation {cid}")
    (position,) = conn.execute(
        "SELECT COALESCE(MAX(position) + 1, 0) FROM turns WHERE conversation_id=?", (cid,)
    ).fetchone()
    row = (cid, position, *values)
    conn.execute(f"INSERT INTO turns ({_TURN_COLUMNS}) VALUES ({','.join('?' * len(row))})", row)
    return row


def _get(conn: sqlite3.Connection, cid: str) -> Conversation | None:
    row = conn.execute(f"{_INFO} WHERE c.id=?", (cid,)).fetchone()
    if row is None:
        return None
    rows = conn.execute(
        f"SELECT {_TURN_COLUMNS} FROM turns WHERE conversation_id=? ORDER BY position", (cid,)
    ).fetchall()
    return Conversation(_info(row), tuple(_turn(r) for r in rows))


def _history(conn: sqlite3.Connection, cid: str, max_turns: int) -> list[tuple[str, str]]:
    if conn.execute("SELECT 1 FROM conversations WHERE id=?", (cid,)).fetchone() is None:
        raise ConversationNotFound(f"no conversation {cid}")
    rows = conn.execute(
        "SELECT question, answer FROM turns WHERE conversation_id=? ORDER BY position DESC LIMIT ?",
        (cid, max_turns),
    ).fetchall()
    return [(q, a) for q, a in reversed(rows)]


def _info(row: tuple[Any, ...]) -> ConversationInfo:
    cid, title, created, updated, turns = row
    return ConversationInfo(cid, title, _time(created), _time(updated), turns)


def _turn(row: tuple[Any, ...]) -> Turn:
    cid, position, question, answer, text, trace, mode, model, usage, timings, created, quotes = row
    return Turn(
        cid,
        position,
        question,
        answer,
        text,
        tuple(json.loads(trace)),
        mode,
        model,
        json.loads(usage),
        json.loads(timings),
        _time(created),
        tuple(json.loads(quotes)),
    )


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _title(text: str) -> str:
    title = " ".join(text.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def _checked(conversation_id: str) -> str | None:
    """The id if it is one `create` could have made; garbage never reaches SQL."""
    if isinstance(conversation_id, str) and _ID.fullmatch(conversation_id):
        return conversation_id
    return None


def _require(conversation_id: str) -> str:
    cid = _checked(conversation_id)
    if cid is None:
        raise ConversationNotFound(f"not a conversation id: {conversation_id!r:.60}")
    return cid
