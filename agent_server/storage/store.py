"""Conversations, their turns and the uploaded documents, in one database (`databases.py`).

    Store                 open · create · get · list · delete · add_turn · history
                          put_document · delete_document · documents · document_content · close
    ConversationNotFound  (an AgentError) the id names no conversation, or is not an id at all

SQLite by default, PostgreSQL when `AGENT_DATABASE_URL` says so: service replicas then share
one store, which is all the state they have (a replica's document folder and retrieval index
are copies, kept in step by `document_sync.py`).

A turn is written once, when its answer is final, in one transaction that also bumps the
conversation's `updated_at` (and titles it from its first question): a crash mid-answer leaves
nothing behind, never half a turn. That update takes the conversation's row lock first, so
replicas appending to one conversation get its positions one at a time.

A deleted document stays as a tombstone without its content, so that every replica that kept a
copy learns to remove it, even one that was down at the time.

Opening waits (it belongs in the lifespan, before serving) and runs the pending schema
migrations; every other call is async. Left out: search, editing or branching turns, a cap on
conversations kept.

Long (over 300 lines) because it holds both schemas' migrations and every query in one place,
where a change to the tables is reviewed.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agent_server.core.events import FinalEvent
from agent_server.errors import ConversationNotFound
from agent_server.storage.databases import Database, Migrations, Sql, open_database

T = TypeVar("T")
Json = Mapping[str, Any]

_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as `create` makes them
TITLE_CHARS = 80

# Statements, not scripts: `executescript` would commit, and a migration is one transaction.
SQLITE_MIGRATIONS: Migrations = (
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
    (
        """CREATE TABLE documents (
        name     TEXT PRIMARY KEY,
        content  BLOB,              -- NULL: deleted, kept as a tombstone
        bytes    INTEGER NOT NULL,
        sha256   TEXT NOT NULL,
        modified TEXT NOT NULL
    ) WITHOUT ROWID""",
    ),
)
# The same tables in PostgreSQL's own types; one migration so far (its history starts here).
POSTGRES_MIGRATIONS: Migrations = (
    (
        """CREATE TABLE conversations (
        id         TEXT PRIMARY KEY,
        title      TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
        "CREATE INDEX conversations_by_update ON conversations (updated_at)",
        """CREATE TABLE turns (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position   INTEGER NOT NULL,
        question   TEXT NOT NULL,
        answer     TEXT NOT NULL,
        text       TEXT NOT NULL,
        trace      JSONB NOT NULL,
        mode       TEXT NOT NULL,
        model      TEXT NOT NULL,
        usage      JSONB NOT NULL,
        timings    JSONB NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        quotes     JSONB NOT NULL DEFAULT '[]',
        PRIMARY KEY (conversation_id, position)
    )""",
        """CREATE TABLE documents (
        name     TEXT PRIMARY KEY,
        content  BYTEA,
        bytes    BIGINT NOT NULL,
        sha256   TEXT NOT NULL,
        modified TIMESTAMPTZ NOT NULL
    )""",
    ),
)
MIGRATIONS = {"sqlite": SQLITE_MIGRATIONS, "postgresql": POSTGRES_MIGRATIONS}
SCHEMA_VERSION = len(SQLITE_MIGRATIONS)  # of a SQLite file


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


@dataclass(frozen=True)
class StoredDocument:
    """A document's metadata; `deleted` for a tombstone."""

    name: str
    bytes: int
    sha256: str
    modified: datetime
    deleted: bool = False


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, database: Database, clock: Callable[[], datetime] = _utc_now) -> None:
        self.database = database
        self._clock = clock

    @classmethod
    def open(
        cls, url: str | None, default_path: Path, clock: Callable[[], datetime] = _utc_now
    ) -> Store:
        """The store `url` names (see `open_database`), migrated; waits until done."""
        return cls(open_database(url, default_path, MIGRATIONS), clock)

    # -- conversations --------------------------------------------------------------------------

    async def create(self, title: str | None = None) -> ConversationInfo:
        cid, now = uuid.uuid4().hex, self._now()
        title = _title(title or "") or None
        await self.database.run(
            lambda sql: sql.execute(
                "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?,?,?,?)",
                (cid, title, now, now),
            )
        )
        return ConversationInfo(cid, title, _time(now), _time(now), 0)

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation with its turns in order, or None."""
        cid = _checked(conversation_id)
        return None if cid is None else await self.database.run(lambda sql: _get(sql, cid))

    async def list(self, limit: int = 50, offset: int = 0) -> builtins.list[ConversationInfo]:
        """Conversations, the most recently updated first."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        rows = await self.database.run(
            lambda sql: sql.execute(
                f"{_INFO} ORDER BY c.updated_at DESC, c.created_at DESC, c.id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        )
        return [_info(row) for row in rows]

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation and its turns; False if there was none."""
        cid = _checked(conversation_id)
        if cid is None:
            return False
        cursor = await self.database.run(
            lambda sql: sql.execute("DELETE FROM conversations WHERE id=?", (cid,))
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
        row = await self.database.run(lambda sql: sql.transaction(lambda: _add(sql, cid, values)))
        return _turn(row)

    async def history(self, conversation_id: str, max_turns: int) -> builtins.list[tuple[str, str]]:
        """(question, answer) of the last `max_turns` turns, oldest first."""
        cid = _require(conversation_id)
        return await self.database.run(lambda sql: _history(sql, cid, max(max_turns, 0)))

    # -- documents ------------------------------------------------------------------------------

    async def put_document(self, name: str, content: bytes) -> StoredDocument:
        """Add or replace a document (and bring back a deleted one)."""
        doc = StoredDocument(name, len(content), hashlib.sha256(content).hexdigest(), self._clock())
        await self.database.run(
            lambda sql: sql.execute(
                "INSERT INTO documents (name, content, bytes, sha256, modified) VALUES (?,?,?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET content=excluded.content,"
                " bytes=excluded.bytes, sha256=excluded.sha256, modified=excluded.modified",
                (name, content, doc.bytes, doc.sha256, _stamp(doc.modified)),
            )
        )
        return doc

    async def delete_document(self, name: str) -> bool:
        """Leave a tombstone in its place; False if there was no such document."""
        cursor = await self.database.run(
            lambda sql: sql.execute(
                "UPDATE documents SET content=NULL, bytes=0, sha256='', modified=?"
                " WHERE name=? AND content IS NOT NULL",
                (self._now(), name),
            )
        )
        return cursor.rowcount > 0

    async def documents(self) -> builtins.list[StoredDocument]:
        """Every document's metadata, tombstones included, by name."""
        rows = await self.database.run(
            lambda sql: sql.execute(
                "SELECT name, bytes, sha256, modified, content IS NULL FROM documents ORDER BY name"
            ).fetchall()
        )
        return [StoredDocument(n, b, s, _time(m), bool(d)) for n, b, s, m, d in rows]

    async def document_content(self, name: str) -> bytes | None:
        """The document's bytes; None if there is none (or it was deleted)."""
        row = await self.database.run(
            lambda sql: sql.execute(
                "SELECT content FROM documents WHERE name=?", (name,)
            ).fetchone()
        )
        return None if row is None or row[0] is None else bytes(row[0])

    def close(self) -> None:
        """Finish the queued calls, then close the database. Safe to call twice."""
        self.database.close()

    def _now(self) -> str:
        return _stamp(self._clock())


_INFO = (
    "SELECT c.id, c.title, c.created_at, c.updated_at,"
    " (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id) FROM conversations c"
)
_TURN_COLUMNS = (
    "conversation_id, position, question, answer, text, trace, mode, model, usage, timings,"
    " created_at, quotes"
)


def _add(sql: Sql, cid: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
    question, now = values[0], values[-2]
    # The update doubles as the existence check and takes the row's lock; it runs first so a
    # failing insert undoes it.
    updated = sql.execute(
        "UPDATE conversations SET updated_at=?, title=COALESCE(title, ?) WHERE id=?",
        (now, _title(question) or None, cid),
    )
    if updated.rowcount == 0:
        raise ConversationNotFound(f"no conversation {cid}")
    (position,) = sql.execute(
        "SELECT COALESCE(MAX(position) + 1, 0) FROM turns WHERE conversation_id=?", (cid,)
    ).fetchone()
    row = (cid, position, *values)
    sql.execute(f"INSERT INTO turns ({_TURN_COLUMNS}) VALUES ({','.join('?' * len(row))})", row)
    return row


def _get(sql: Sql, cid: str) -> Conversation | None:
    row = sql.execute(f"{_INFO} WHERE c.id=?", (cid,)).fetchone()
    if row is None:
        return None
    rows = sql.execute(
        f"SELECT {_TURN_COLUMNS} FROM turns WHERE conversation_id=? ORDER BY position", (cid,)
    ).fetchall()
    return Conversation(_info(row), tuple(_turn(r) for r in rows))


def _history(sql: Sql, cid: str, max_turns: int) -> list[tuple[str, str]]:
    if sql.execute("SELECT 1 FROM conversations WHERE id=?", (cid,)).fetchone() is None:
        raise ConversationNotFound(f"no conversation {cid}")
    rows = sql.execute(
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
        tuple(_loads(trace)),
        mode,
        model,
        _loads(usage),
        _loads(timings),
        _time(created),
        tuple(_loads(quotes)),
    )


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _loads(value: Any) -> Any:
    # SQLite keeps JSON as text; PostgreSQL's JSONB comes back parsed.
    return json.loads(value) if isinstance(value, str) else value


def _stamp(moment: datetime) -> str:
    # ISO 8601 in UTC at a fixed width: sorts as text in SQLite, parses as TIMESTAMPTZ.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


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
