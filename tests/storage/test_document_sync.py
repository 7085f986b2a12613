"""A replica's documents folder kept in step with the store (a real SQLite file in tmp_path).

Two `DocumentSync`s on one store, each with its own folder, stand for two replicas.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent_server.errors import BadRequest, NotFound
from agent_server.storage.document_sync import DocumentSync
from agent_server.storage.store import Store


class Reindex:
    """Counts the calls; answers False (no engine yet) until `ready`."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.ready


@pytest.fixture
def store(tmp_path: Path):
    opened = Store.open(None, tmp_path / "store.db")
    yield opened
    opened.close()


def replica(store: Store, folder: Path, reindex: Reindex | None = None) -> DocumentSync:
    folder.mkdir(parents=True, exist_ok=True)
    return DocumentSync(store, folder, reindex or Reindex())


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_an_upload_reaches_the_other_replica_and_so_does_its_deletion(store, tmp_path):
    a_index, b_index = Reindex(), Reindex()
    a = replica(store, tmp_path / "a", a_index)
    b = replica(store, tmp_path / "b", b_index)

    async def go():
        await a.upload("pump.txt", b"Warranty: 24 months.")
        first = await b.sync()
        again = await b.sync()  # nothing new: no write, no reindex
        await a.upload("pump.txt", b"Warranty: 36 months.")  # replaced
        replaced = await b.sync()
        await b.delete("pump.txt")
        removed = await a.sync()
        return first, again, replaced, removed

    first, again, replaced, removed = asyncio.run(go())
    assert (first, again, replaced, removed) == (True, False, True, True)
    assert names(tmp_path / "a") == names(tmp_path / "b") == []
    assert b_index.calls == 3 and a_index.calls == 3  # b: 2 syncs + delete; a: 2 uploads + sync


def test_a_copy_edited_or_lost_locally_is_restored_from_the_store(store, tmp_path):
    a = replica(store, tmp_path / "a")
    b = replica(store, tmp_path / "b")
    asyncio.run(a.upload("notes.md", b"# kept"))
    asyncio.run(b.sync())
    (tmp_path / "b" / "notes.md").write_bytes(b"# edited by hand")
    assert asyncio.run(b.sync()) is True
    assert (tmp_path / "b" / "notes.md").read_bytes() == b"# kept"
    (tmp_path / "b" / "notes.md").unlink()
    assert asyncio.run(b.sync()) is True
    assert (tmp_path / "b" / "notes.md").read_bytes() == b"# kept"


def test_hand_placed_files_stay_this_replicas_own(store, tmp_path):
    a = replica(store, tmp_path / "a")
    (tmp_path / "a" / "local.txt").write_text("only here")
    assert asyncio.run(a.sync()) is False
    assert [d.name for d in asyncio.run(a.listing())] == ["local.txt"]
    assert asyncio.run(store.documents()) == []  # never copied to the store
    asyncio.run(a.delete("local.txt"))  # but it can be deleted here
    assert names(tmp_path / "a") == []
    with pytest.raises(NotFound, match="local.txt"):
        asyncio.run(a.delete("local.txt"))


def test_a_change_before_the_model_loaded_is_indexed_once_it_has(store, tmp_path):
    reindex = Reindex(ready=False)
    a = replica(store, tmp_path / "a")
    b = replica(store, tmp_path / "b", reindex)
    asyncio.run(a.upload("pump.txt", b"x"))
    assert asyncio.run(b.sync()) is True and reindex.calls == 1
    reindex.ready = True
    asyncio.run(b.sync())  # nothing new, but the pending change is handed on now
    asyncio.run(b.sync())
    assert reindex.calls == 2


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [("run.sh", b"x", ".pdf"), (".hidden.md", b"x", "bad document name"), ("e.txt", b"", "empty")],
)
def test_bad_uploads_write_nothing_anywhere(store, tmp_path, name, data, problem):
    a = replica(store, tmp_path / "a")
    with pytest.raises(BadRequest, match=problem):
        asyncio.run(a.upload(name, data))
    assert names(tmp_path / "a") == [] and asyncio.run(store.documents()) == []
