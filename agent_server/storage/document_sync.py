"""The user's documents: uploads kept in the store, this replica's folder kept a copy of them.

    DocumentSync   upload · delete · listing · sync · run (sync every few seconds) · checked_name

Retrieve indexes a folder (`AGENT_DOCUMENTS`). An upload is written to the store first (the
one truth every replica shares), then to this replica's folder; `sync` brings the folder in
line with the store: a document that is missing or differs is written, a deleted one (the
store keeps a tombstone) is removed. When anything changed, `reindex` is called. So a document
uploaded to one replica reaches the others within one sync interval, or at once on their next
listing (which syncs first).

Files put in the folder by hand, under names the store never had, are this replica's own: served
and indexed, never copied to the store or removed by a sync.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent_server.errors import AgentError, BadRequest, NotFound
from agent_server.files import write_atomically
from agent_server.storage.store import Store
from tools.documents import SUFFIXES

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalDocument:
    name: str
    bytes: int
    modified: float  # seconds since the epoch, of this replica's copy


class DocumentSync:
    def __init__(self, store: Store, folder: Path, reindex: Callable[[], bool]) -> None:
        """`reindex()` re-reads the folder; False when it could not yet (no model loaded)."""
        self.store = store
        self.folder = folder
        self._reindex = reindex
        self._pending = False  # a change `reindex` could not take yet
        self._lock = asyncio.Lock()  # one sync (or upload, or delete) at a time
        self._hashes: dict[str, tuple[int, int, str]] = {}  # name: (size, mtime_ns, sha256)

    async def upload(self, name: str, data: bytes) -> LocalDocument:
        name = checked_name(name)
        if not data:
            raise BadRequest(f"{name} is empty")
        async with self._lock:
            await self.store.put_document(name, data)
            await asyncio.to_thread(write_atomically, self.folder / name, data)
        self._changed()
        return _local(self.folder / name)

    async def delete(self, name: str) -> None:
        """Delete an uploaded document everywhere, or a hand-placed file here."""
        name = checked_name(name)
        async with self._lock:
            in_store = await self.store.delete_document(name)
            path = self.folder / name
            if not in_store and not path.is_file():
                raise NotFound(f"no document {name!r}")
            path.unlink(missing_ok=True)
        self._changed()

    async def listing(self) -> list[LocalDocument]:
        """The documents this replica serves, after a sync."""
        await self.sync()
        return await asyncio.to_thread(self._listing)

    async def sync(self) -> bool:
        """Bring the folder in line with the store; True if a file was written or removed."""
        async with self._lock:
            changed = False
            for doc in await self.store.documents():
                path = self.folder / doc.name
                if not SAFE_NAME.match(doc.name):
                    continue  # never a path of ours to write: the store was edited by hand
                if doc.deleted:
                    if path.is_file():
                        path.unlink(missing_ok=True)
                        changed = True
                elif await asyncio.to_thread(self._sha256, path) != doc.sha256:
                    changed |= await self._fetch(doc.name, path)
        if changed or self._pending:
            self._changed()
        return changed

    async def run(self, interval_s: float) -> None:
        """Sync every `interval_s` until cancelled; a failed sync is logged and retried."""
        while True:
            try:
                await self.sync()
            except (AgentError, OSError) as exc:  # the database or the disk, for a while
                logger.warning("syncing the documents failed (retrying): %s", exc)
            except Exception:  # a bug: logged in full, and the loop lives on
                logger.exception("syncing the documents failed (retrying)")
            await asyncio.sleep(interval_s)

    async def _fetch(self, name: str, path: Path) -> bool:
        content = await self.store.document_content(name)
        if content is None:  # deleted since it was listed: the next sync removes it
            return False
        await asyncio.to_thread(write_atomically, path, content)
        return True

    def _changed(self) -> None:
        self._pending = not self._reindex()

    def _sha256(self, path: Path) -> str | None:
        # Hashed again only when its size or mtime moved: a sync every few seconds reads
        # nothing it has read before.
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        known = self._hashes.get(path.name)
        if known and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self._hashes[path.name] = (stat.st_size, stat.st_mtime_ns, digest)
        return digest

    def _listing(self) -> list[LocalDocument]:
        paths = sorted(self.folder.iterdir())
        return [_local(p) for p in paths if p.is_file() and SAFE_NAME.match(p.name)]


def checked_name(name: str) -> str:
    """A document's name if it is a safe file name with a known suffix; else `BadRequest`."""
    name = Path(name).name
    if not SAFE_NAME.match(name):
        raise BadRequest(
            f"bad document name {name!r}: use letters, digits, '.', '-' and '_' (up to 128)"
        )
    if not name.lower().endswith(SUFFIXES):
        raise BadRequest(f"{name}: documents must be one of {', '.join(SUFFIXES)}")
    return name


def _local(path: Path) -> LocalDocument:
    stat = path.stat()
    return LocalDocument(path.name, stat.st_size, stat.st_mtime)
