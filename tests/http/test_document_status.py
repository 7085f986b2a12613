"""Uploads on the default set-up: a documents folder under the data folder, each document's
indexing status in the list, and Retrieve offered to the model once there is something to
search. Real HTTP on loopback, the real embedder (all-MiniLM-L6-v2), a scripted model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from doubles import EchoTool, GatedEmbedder
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings
from tools.embedder import Embedder
from tools.retrieval import Retrieve

pytestmark = pytest.mark.slow

NOTE = b"# Boiler\n\nThe Quillfeather boiler was serviced on 12 May; its warranty runs to 2031.\n"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def gated(embedder: Embedder) -> GatedEmbedder:
    return GatedEmbedder(embedder)


@pytest.fixture
def service(tmp_path: Path, gated: GatedEmbedder) -> Iterator[tuple[httpx.Client, Engine]]:
    """The service on default settings (no AGENT_DOCUMENTS), Retrieve built as the registry
    would on the folder those settings name, and its embedder gated."""
    settings = Settings(data_dir=tmp_path / "data", index_dir=tmp_path / "index")
    engines: list[Engine] = []

    def engine(s: Settings) -> Engine:
        retrieve = Retrieve(s.documents_path, s.index_dir or tmp_path, embedder=gated)
        built = Engine(
            ScriptedBackend(), {"Echo": EchoTool(), "Retrieve": retrieve}, Prompt("chat")
        )
        engines.append(built)
        return built

    for client in serve(create_app(settings, engine)):
        wait_ready(client)
        yield client, engines[0]


def statuses(client: httpx.Client) -> dict[str, tuple[str, str | None]]:
    return {d["id"]: (d["status"], d["problem"]) for d in client.get("/v1/documents").json()}


def wait_for(condition, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_an_upload_is_indexing_then_ready_and_retrieve_is_offered_from_then_on(
    service, gated, tmp_path
):
    client, engine = service
    assert (tmp_path / "data" / "documents").is_dir()  # made at start, before any upload
    assert "Retrieve" not in engine.select_tools(None)  # nothing to search: not in the prompt
    upload = client.post("/v1/documents", files={"file": ("boiler.md", NOTE)})
    assert upload.status_code == 201 and upload.json()["status"] == "indexing"
    assert statuses(client) == {"boiler.md": ("indexing", None)}  # the embedder is held
    gated.gate.set()
    wait_for(lambda: statuses(client)["boiler.md"][0] == "ready")
    assert "Retrieve" in engine.select_tools(None)
    hits = client.get("/v1/documents/search", params={"q": "boiler warranty"}).json()
    assert hits and hits[0]["document"] == "boiler.md"


def test_a_long_upload_shows_how_far_its_indexing_is(service, gated):
    client, _ = service
    # Twelve paragraphs of about 150 words: a dozen passages or more to embed.
    long = "\n\n".join(f"Paragraph {i}. " + "The boiler log repeats. " * 37 for i in range(12))
    client.post("/v1/documents", files={"file": ("log.md", long.encode())})
    # The gated embedder reports half its passages done, then holds.
    wait_for(lambda: client.get("/v1/documents").json()[0]["progress"] is not None)
    (listed,) = client.get("/v1/documents").json()
    assert listed["status"] == "indexing" and 0 < listed["progress"] < 1
    gated.gate.set()
    wait_for(lambda: statuses(client)["log.md"][0] == "ready")
    assert client.get("/v1/documents").json()[0]["progress"] is None


def test_an_unreadable_upload_says_why_beside_the_readable_ones(service, gated):
    client, _ = service
    gated.gate.set()
    client.post("/v1/documents", files={"file": ("boiler.md", NOTE)})
    client.post("/v1/documents", files={"file": ("scan.pdf", b"%PDF-1.4 not really a pdf")})
    wait_for(lambda: statuses(client).get("scan.pdf", ("indexing",))[0] != "indexing")
    wait_for(lambda: statuses(client)["boiler.md"][0] == "ready")
    status, problem = statuses(client)["scan.pdf"]
    assert status == "unreadable" and problem


def test_documents_list_says_when_retrieve_is_off(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", tools=[])
    app = create_app(settings, lambda _: Engine(ScriptedBackend(), {}, Prompt("chat")))
    for client in serve(app):
        wait_ready(client)
        client.post("/v1/documents", files={"file": ("boiler.md", NOTE)})
        status, problem = statuses(client)["boiler.md"]
        assert status == "not indexed" and problem is not None and "AGENT_TOOLS" in problem
