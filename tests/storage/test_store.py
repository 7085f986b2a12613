"""The store on a real SQLite file in tmp_path, and on a real PostgreSQL server (`postgres_url`).

The tests that take `store` or `target` run on both; the rest are about SQLite's file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from agent_server.core.events import FinalEvent, ResultEvent, Timings, Usage
from agent_server.errors import AgentError, ConfigError, ConversationNotFound
from agent_server.storage.databases import SqliteDatabase
from agent_server.storage.store import (
    SCHEMA_VERSION,
    SQLITE_MIGRATIONS,
    NewTurn,
    Store,
)

# What a NOT NULL column given None raises, by database.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.errors.IntegrityError)


class Clock:
    """A clock that ticks one second per reading, so "newest" is never a tie."""

    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def path(tmp_path):
    return tmp_path / "nested" / "folder" / "conversations.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, path):
    """(url, path) for `Store.open`: a SQLite file, or a fresh database on the test server."""
    if request.param == "sqlite":
        return None, path
    return request.getfixturevalue("postgres_database"), path


@pytest.fixture
def store(target):
    opened = Store.open(*target, clock=Clock())
    yield opened
    opened.close()


def rows(store, query):
    return asyncio.run(store.database.run(lambda sql: sql.execute(query).fetchall()))


def turn(question="What is 2+2?", answer="4.", **kwargs):
    return NewTurn(question, answer, kwargs.pop("text", answer), **kwargs)


def test_create_get_list_delete(store):
    async def go():
        info = await store.create("First chat")
        assert len(info.id) == 32 and info.title == "First chat" and info.turns == 0
        got = await store.get(info.id)
        assert got.info == info and got.turns == ()
        assert [c.id for c in await store.list()] == [info.id]
        assert await store.delete(info.id) is True
        assert await store.delete(info.id) is False
        assert await store.get(info.id) is None
        assert await store.list() == []

    asyncio.run(go())


def test_turns_come_back_in_order_with_everything_kept(store):
    trace = ResultEvent(0, "Calculator", "2+2", "4", None, 0.01)
    text = "It is [Calculator(2+2) → 4] 4."
    final = FinalEvent("It is 4.", text, (trace,), Usage(9, 5, 2), Timings(0.1, 0.2))

    async def go():
        cid = (await store.create()).id
        new = NewTurn.from_final("2+2?", final, mode="toolformer", model="m")
        first = await store.add_turn(cid, new)
        second = await store.add_turn(cid, turn("And 3+3?", "6."))
        got = await store.get(cid)
        return first, second, got

    first, second, got = asyncio.run(go())
    assert [t.position for t in got.turns] == [0, 1]
    assert got.turns == (first, second)
    assert got.info.turns == 2
    assert first.text == "It is [Calculator(2+2) → 4] 4." and first.answer == "It is 4."
    assert first.trace == (
        {
            "index": 0,
            "tool": "Calculator",
            "argument": "2+2",
            "result": "4",
            "error": None,
            "duration_s": 0.01,
            "sample": None,
        },
    )
    assert first.usage == {"prompt_tokens": 9, "completion_tokens": 5, "spliced_tokens": 2}
    assert first.timings["decode_s"] == 0.2
    assert (first.mode, first.model) == ("toolformer", "m")
    assert got.info.updated_at == second.created_at > got.info.created_at


def test_the_first_question_titles_an_untitled_conversation(store):
    long_question = "Why  is\nthe sky blue " + "and why " * 30

    async def go():
        untitled = (await store.create()).id
        titled = (await store.create("Mine")).id
        await store.add_turn(untitled, turn(long_question))
        await store.add_turn(untitled, turn("A second question"))
        await store.add_turn(titled, turn("Ignored for the title"))
        return (await store.get(untitled)).info.title, (await store.get(titled)).info.title

    first, mine = asyncio.run(go())
    assert first.startswith("Why is the sky blue and why") and first.endswith("…")
    assert len(first) == 80
    assert mine == "Mine"


def test_list_is_newest_first_with_turn_counts_and_pages(store):
    async def go():
        ids = [(await store.create(f"c{i}")).id for i in range(4)]
        await store.add_turn(ids[1], turn())  # c1 is now the most recently updated
        return ids, await store.list(), await store.list(limit=2, offset=1)

    ids, listed, page = asyncio.run(go())
    assert [c.id for c in listed] == [ids[1], ids[3], ids[2], ids[0]]
    assert [c.turns for c in listed] == [1, 0, 0, 0]
    assert [c.id for c in page] == [ids[3], ids[2]]
    with pytest.raises(ValueError):
        asyncio.run(store.list(limit=-1))


def test_delete_cascades_to_turns(store):
    async def go():
        keep, drop = (await store.create()).id, (await store.create()).id
        for cid in (keep, drop, drop):
            await store.add_turn(cid, turn())
        await store.delete(drop)
        return keep

    keep = asyncio.run(go())
    assert rows(store, "SELECT conversation_id FROM turns") == [(keep,)]


def test_history_is_the_last_turns_oldest_first(store):
    async def go():
        cid = (await store.create()).id
        assert await store.history(cid, 5) == []
        for i in range(5):
            await store.add_turn(cid, turn(f"q{i}", f"a{i}"))
        return (
            await store.history(cid, 3),
            await store.history(cid, 0),
            await store.history(cid, 99),
        )

    last3, none, everything = asyncio.run(go())
    assert last3 == [("q2", "a2"), ("q3", "a3"), ("q4", "a4")]
    assert none == []
    assert len(everything) == 5


def test_everything_survives_a_restart(target):
    first = Store.open(*target)

    async def write():
        cid = (await first.create()).id
        await first.add_turn(cid, turn("q", "a", trace=[{"tool": "Echo"}]))
        return cid, await first.get(cid)

    cid, before = asyncio.run(write())
    first.close()
    first.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(first.get(cid))

    second = Store.open(*target)
    try:
        assert asyncio.run(second.get(cid)) == before
        assert asyncio.run(second.history(cid, 6)) == [("q", "a")]
    finally:
        second.close()


def test_a_failed_add_turn_leaves_nothing_written(store):
    async def go():
        info = await store.create()
        await store.add_turn(info.id, turn("kept"))
        before = await store.get(info.id)
        with pytest.raises(TypeError):  # not JSON: fails before the transaction begins
            await store.add_turn(info.id, turn(trace=[{"x": object()}]))
        # Fails inside the transaction, after updated_at was bumped: all of it is rolled back.
        with pytest.raises(INTEGRITY_ERRORS):
            await store.add_turn(info.id, turn(answer=None))
        return before, await store.get(info.id)

    before, after = asyncio.run(go())
    assert after == before


def test_a_failed_first_turn_does_not_title_the_conversation(store):
    async def go():
        cid = (await store.create()).id
        with pytest.raises(INTEGRITY_ERRORS):
            await store.add_turn(cid, turn("Would be the title", answer=None))
        return await store.get(cid)

    got = asyncio.run(go())
    assert got.info.title is None and got.turns == ()


def test_concurrent_add_turns_get_unique_ordered_positions(store):
    async def go():
        cid = (await store.create()).id
        added = await asyncio.gather(*(store.add_turn(cid, turn(f"q{i}")) for i in range(40)))
        return added, await store.get(cid)

    added, got = asyncio.run(go())
    assert sorted(t.position for t in added) == list(range(40))
    assert [t.position for t in got.turns] == list(range(40))
    assert {t.question for t in got.turns} == {f"q{i}" for i in range(40)}
    assert [(t.position, t.question) for t in got.turns] == sorted(
        (t.position, t.question) for t in added
    )
    if isinstance(store.database, SqliteDatabase):  # one thread: in call order, too
        assert [t.question for t in got.turns] == [f"q{i}" for i in range(40)]


def test_two_stores_on_one_database_do_not_collide(target):
    a, b = Store.open(*target), Store.open(*target)
    try:

        async def go():
            cid = (await a.create()).id
            await asyncio.gather(
                *(s.add_turn(cid, turn(f"q{i}")) for i in range(10) for s in (a, b))
            )
            return await b.get(cid)

        got = asyncio.run(go())
    finally:
        a.close()
        b.close()
    assert [t.position for t in got.turns] == list(range(20))


def test_file_is_in_wal_mode_with_foreign_keys_and_a_schema_version(path):
    Store.open(None, path).close()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        # Foreign keys are per connection: prove the store's schema declares the cascade.
        fks = raw.execute("PRAGMA foreign_key_list(turns)").fetchall()
        assert [(fk[2], fk[6]) for fk in fks] == [("conversations", "CASCADE")]
    finally:
        raw.close()


def test_a_version_1_file_gains_quotes_and_keeps_its_turns(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(path)
    for statement in SQLITE_MIGRATIONS[0]:
        raw.execute(statement)
    now = "2026-01-01T00:00:00.000000+00:00"
    raw.execute("INSERT INTO conversations VALUES (hex(zeroblob(16)), 't', ?, ?)", (now, now))
    raw.execute(
        "INSERT INTO turns VALUES ((SELECT id FROM conversations), 0, 'q', 'a', 'a', '[]',"
        " 'toolformer', 'm', '{}', '{}', ?)",
        (now,),
    )
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    store = Store.open(None, path)
    try:
        (info,) = asyncio.run(store.list())
        conversation = asyncio.run(store.get(info.id))
        assert conversation is not None
        assert [(t.question, t.quotes) for t in conversation.turns] == [("q", ())]
    finally:
        store.close()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (3,)
    finally:
        raw.close()


def test_quotes_round_trip(store):
    quote = {"number": 1, "title": "T", "url": "https://a.example/", "text": "verbatim"}

    async def go():
        created = await store.create()
        await store.add_turn(created.id, NewTurn("q", "a [1]", "a [1]", quotes=[quote]))
        return await store.get(created.id)

    conversation = asyncio.run(go())
    assert conversation.turns[0].quotes == (quote,)


def test_a_file_from_a_newer_version_is_refused(path):
    Store.open(None, path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(ConfigError, match="schema version"):
        Store.open(None, path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    bogus = tmp_path / "not.db"
    bogus.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite file"):
        Store.open(None, bogus)


@pytest.mark.parametrize(
    "bad", ["", "x' OR 1=1 --", "0" * 31, "G" * 32, "A" * 32, "0" * 33, None, 42]
)
def test_bad_ids_are_rejected_before_sql(store, bad):
    async def go():
        await store.create()  # a row that a leaky query would find
        assert await store.get(bad) is None
        assert await store.delete(bad) is False
        with pytest.raises(ConversationNotFound):
            await store.add_turn(bad, turn())
        with pytest.raises(ConversationNotFound):
            await store.history(bad, 3)
        return await store.list()

    listed = asyncio.run(go())
    assert len(listed) == 1 and listed[0].turns == 0


def test_unknown_conversation_is_a_clear_error(store):
    missing = "0" * 32
    with pytest.raises(ConversationNotFound, match=f"no conversation {missing}") as caught:
        asyncio.run(store.add_turn(missing, turn()))
    assert isinstance(caught.value, AgentError)
    with pytest.raises(ConversationNotFound):
        asyncio.run(store.history(missing, 3))


def test_documents_put_replace_delete_and_tombstone(store):
    async def go():
        first = await store.put_document("notes.md", b"# v1")
        await store.put_document("a.txt", b"alpha")
        replaced = await store.put_document("notes.md", b"# version two")
        listed = await store.documents()
        content = await store.document_content("notes.md")
        deleted = await store.delete_document("notes.md")
        again = await store.delete_document("notes.md")
        missing = await store.delete_document("never.txt")
        after = await store.documents()
        gone = await store.document_content("notes.md")
        revived = await store.put_document("notes.md", b"back")
        return first, replaced, listed, content, (deleted, again, missing), after, gone, revived

    first, replaced, listed, content, deletes, after, gone, revived = asyncio.run(go())
    assert first.sha256 != replaced.sha256 and replaced.bytes == len(b"# version two")
    assert [(d.name, d.bytes, d.deleted) for d in listed] == [
        ("a.txt", 5, False),
        ("notes.md", 13, False),
    ]
    assert listed[1].sha256 == replaced.sha256 and listed[1].modified == replaced.modified
    assert content == b"# version two"
    assert deletes == (True, False, False)
    assert [(d.name, d.deleted) for d in after] == [("a.txt", False), ("notes.md", True)]
    assert gone is None
    assert revived.bytes == 4 and asyncio.run(store.document_content("notes.md")) == b"back"


def test_postgres_keeps_its_schema_version_and_refuses_a_newer_one(postgres_database, path):
    from agent_server.storage.store import POSTGRES_MIGRATIONS

    # Two replicas starting at once: the advisory lock makes one migrate, the other wait.
    with ThreadPoolExecutor(2) as pool:
        opened = list(pool.map(lambda _: Store.open(postgres_database, path), range(2)))
    for store in opened:
        store.close()
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (len(POSTGRES_MIGRATIONS),)
        ]
        conn.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(ConfigError, match="schema version"):
        Store.open(postgres_database, path)


def test_an_unreachable_postgres_is_a_clear_error(path):
    from agent_server.model_server import free_port

    url = f"postgresql://nobody:secret@127.0.0.1:{free_port()}/none"
    with pytest.raises(ConfigError, match="cannot use the PostgreSQL database") as caught:
        Store.open(url, path)
    assert "secret" not in str(caught.value)  # the password is not in the message


def test_a_database_url_of_another_kind_is_refused(path):
    with pytest.raises(ConfigError, match="AGENT_DATABASE_URL"):
        Store.open("mysql://localhost/db", path)
