"""Two service processes on different ports share one PostgreSQL server, as replicas would.

Each is a real `agent-server serve` with the default model, its own documents folder, index and
data folder; all they share is `AGENT_DATABASE_URL`, a database on the server the test run
started (Debian's PostgreSQL, `postgres_url`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent_server.model_server import free_port

pytestmark = pytest.mark.model  # each replica loads the default model
FACT = "The Quillfeather 9 pump's warranty lasts thirty-seven months from installation."


def start_replica(root: Path, database_url: str) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    port = free_port()
    for folder in ("documents", "data", "index"):
        (root / folder).mkdir(parents=True)
    env = {
        **os.environ,
        "AGENT_DATABASE_URL": database_url,
        "AGENT_DOCUMENTS": str(root / "documents"),
        "AGENT_DATA_DIR": str(root / "data"),
        "AGENT_INDEX_DIR": str(root / "index"),
        "AGENT_TOOLS": '["Calculator", "Retrieve"]',
        "AGENT_PORT": str(port),
        "AGENT_DOCUMENTS_SYNC_S": "0.5",
        "AGENT_THREADS": "1",  # two models on two cores
    }
    command = [sys.executable, "-m", "agent_server.cli", "serve"]
    with (root / "server.log").open("wb") as log:  # the child keeps its own handle
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)


def eventually(check: Callable[[], object], what: str, timeout_s: float = 120) -> object:
    """`check()`'s first truthy value, tried every 0.2 s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_ready(process: subprocess.Popen[bytes], client: httpx.Client, log: Path) -> None:
    def ready() -> bool:
        assert process.poll() is None, f"a replica exited:\n{log.read_text()[-3000:]}"
        return client.get("/readyz").status_code == 200

    eventually(ready, "a replica to load its model")


@pytest.fixture
def replicas(tmp_path: Path, postgres_database: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    started = [start_replica(tmp_path / name, postgres_database) for name in ("a", "b")]
    try:
        for (process, client), name in zip(started, ("a", "b"), strict=True):
            wait_ready(process, client, tmp_path / name / "server.log")
        yield started[0][1], started[1][1]
    finally:
        for process, client in started:
            client.close()
            process.terminate()
        for process, _ in started:
            process.wait(timeout=30)


def test_a_conversation_started_on_one_replica_continues_on_the_other(replicas):
    a, b = replicas
    first = a.post("/v1/ask", json={"question": "What is 12*7?", "max_new_tokens": 40})
    assert first.status_code == 200, first.text
    cid = first.json()["conversation_id"]

    second = b.post(
        "/v1/ask",
        json={"question": "And add 16 to that.", "conversation_id": cid, "max_new_tokens": 40},
    )
    assert second.status_code == 200, second.text
    assert second.json()["conversation_id"] == cid

    for replica in (a, b):
        turns = replica.get(f"/v1/conversations/{cid}").json()["turns"]
        assert [t["question"] for t in turns] == ["What is 12*7?", "And add 16 to that."]
        assert turns[0]["answer"] == first.json()["answer"]
        assert turns[1]["answer"] == second.json()["answer"]
    listed_on_b = [c["id"] for c in b.get("/v1/conversations").json()]
    assert listed_on_b == [cid]


def test_a_document_uploaded_to_one_replica_is_retrievable_from_the_other(replicas):
    a, b = replicas
    upload = a.post("/v1/documents", files={"file": ("quillfeather.txt", FACT.encode())})
    assert upload.status_code == 201, upload.text

    def search(replica: httpx.Client) -> list[dict[str, object]] | None:
        response = replica.get("/v1/documents/search", params={"q": "Quillfeather pump warranty"})
        if response.status_code == 503:  # the replica is still indexing
            return None
        assert response.status_code == 200, response.text
        hits: list[dict[str, object]] = response.json()
        return hits

    def found_on(replica: httpx.Client) -> list[dict[str, object]] | None:
        hits = search(replica)
        return hits if hits and "quillfeather" in str(hits[0]["document"]) else None

    # B learns of it from the database within a sync interval, then indexes it.
    eventually(
        lambda: "quillfeather.txt" in [d["id"] for d in b.get("/v1/documents").json()],
        "the upload to reach the other replica",
    )
    hits = eventually(lambda: found_on(b), "the other replica to retrieve the upload")
    assert isinstance(hits, list) and "thirty-seven months" in hits[0]["text"]

    # Deleted on B, it goes from A too.
    assert b.delete("/v1/documents/quillfeather.txt").status_code == 204
    eventually(
        lambda: "quillfeather.txt" not in [d["id"] for d in a.get("/v1/documents").json()],
        "the deletion to reach the first replica",
    )
    # Its folder is empty now: an empty library finds nothing, and says so with a 200.
    eventually(lambda: search(a) == [], "the first replica to drop it from its index")
