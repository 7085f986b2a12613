"""The native API over real HTTP on loopback: SSE streaming, tools, documents, disconnects.

The model is the scripted backend (replies queued per test); tools are the test doubles.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from doubles import EchoTool, SlowTool
from serving import serve, wait_idle, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.md").write_text("# Notes\nThe boiler was serviced in May.\n")
    return folder


@pytest.fixture
def client(backend: ScriptedBackend, documents: Path) -> Iterator[httpx.Client]:
    tools = {"Echo": EchoTool(), "Slow": SlowTool()}
    settings = Settings(documents=documents, tools=[])
    app = create_app(settings, lambda _: Engine(backend, tools, Prompt("chat")))
    for client in serve(app):
        wait_ready(client)
        yield client


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_stream_sends_tokens_call_result_and_final(client, backend):
    backend.queue(['It is [Echo("olleh")', " hello."])
    response = client.post("/v1/ask", json={"question": "Say hello", "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "final" and kinds.count("final") == 1
    assert kinds.index("call") < kinds.index("result") < kinds.index("final")
    call = next(data for kind, data in events if kind == "call")
    assert call == {"index": 0, "tool": "Echo", "argument": "olleh"}
    result = next(data for kind, data in events if kind == "result")
    assert result["result"] == "hello" and result["error"] is None
    streamed = "".join(str(data["text"]) for kind, data in events if kind == "token")
    final = events[-1][1]
    assert final["answer"] == "It is hello."
    assert streamed == final["text"].replace(" → hello]", "")  # results travel as events


def test_stream_with_an_unknown_tool_is_a_plain_400(client):
    response = client.post("/v1/ask", json={"question": "x", "stream": True, "tools": ["Nope"]})
    assert response.status_code == 400
    assert response.json() == {"error": "unknown tools ['Nope']; available: ['Echo', 'Slow']"}


def test_an_unknown_mode_is_422_and_webgpt_refuses_tool_options(client):
    response = client.post("/v1/ask", json={"question": "x", "mode": "dream"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "mode"]
    response = client.post("/v1/ask", json={"question": "x", "mode": "webgpt", "tools": ["Echo"]})
    assert response.status_code == 400
    assert response.json() == {
        "error": "tools, max_calls, strategy and samples apply to mode 'toolformer'; "
        "webgpt mode browses"
    }


def test_a_disconnected_stream_stops_the_answer(client, backend):
    backend.queue("word " * 2000)
    with client.stream("POST", "/v1/ask", json={"question": "q", "stream": True}) as response:
        for _ in response.iter_lines():
            break  # read one line, then hang up
    wait_idle(client)  # the answer's generator has closed: nothing feeds the model any more
    assert len(backend.sessions[-1].feeds) < 1000  # it stopped long before the text's end


def test_a_disconnected_plain_request_stops_the_answer(client, backend):
    backend.queue('[Slow("0.6")] ' + "word " * 3000)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/ask", json={"question": "q"}, timeout=0.3)
    wait_idle(client)  # stopped while the tool ran: it never goes on to the text after it
    assert len(backend.sessions[-1].feeds) < 1000
    assert client.get("/healthz").status_code == 200


def test_tools_are_listed_with_description_and_example(client):
    tools = client.get("/v1/tools").json()
    assert [t["name"] for t in tools] == ["Echo", "Slow"]
    assert tools[0] == {
        "name": "Echo",
        "description": "Echoes its input backwards.",
        "example": '"abc"',
        "offered": True,
    }


def test_documents_upload_list_and_delete(client, documents):
    listed = client.get("/v1/documents").json()
    assert [d["id"] for d in listed] == ["notes.md"]

    upload = client.post("/v1/documents", files={"file": ("pump.txt", b"Warranty: 24 months.")})
    assert upload.status_code == 201 and upload.json()["id"] == "pump.txt"
    assert (documents / "pump.txt").read_bytes() == b"Warranty: 24 months."
    assert [d["id"] for d in client.get("/v1/documents").json()] == ["notes.md", "pump.txt"]

    assert client.delete("/v1/documents/pump.txt").status_code == 204
    assert not (documents / "pump.txt").exists()
    missing = client.delete("/v1/documents/pump.txt")
    assert missing.status_code == 404 and "pump.txt" in missing.json()["error"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [("../escape.txt", "escape.txt"), ("run.sh", ".pdf"), (".hidden.md", "bad document name")],
)
def test_bad_uploads_are_400_and_write_nothing(client, documents, name, problem):
    response = client.post("/v1/documents", files={"file": (name, b"data")})
    if name.startswith("../"):
        # The path is dropped, the name kept: it lands inside the folder, never outside.
        assert response.status_code == 201 and (documents / "escape.txt").exists()
        assert not (documents.parent / "escape.txt").exists()
        return
    assert response.status_code == 400 and problem in response.json()["error"]
    assert sorted(p.name for p in documents.iterdir()) == ["notes.md"]


def test_empty_upload_is_400(client):
    response = client.post("/v1/documents", files={"file": ("empty.txt", b"")})
    assert response.status_code == 400 and "empty" in response.json()["error"]


def test_uploads_go_to_a_documents_folder_under_the_data_dir_by_default(backend, tmp_path):
    settings = Settings(tools=[], data_dir=tmp_path / "data")
    app = create_app(settings, lambda _: Engine(backend, {}, Prompt("chat")))
    for client in serve(app):
        wait_ready(client)
        assert client.get("/v1/documents").json() == []
        note = ("note.md", b"# Pump\n\nThe warranty lasts 18 months.")
        assert client.post("/v1/documents", files={"file": note}).status_code == 201
    assert [p.name for p in (tmp_path / "data" / "documents").iterdir()] == ["note.md"]


def test_documents_given_as_one_file_take_no_uploads(backend, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"doc_id": "a", "title": "A", "text": "Some text."}\n')
    settings = Settings(tools=[], documents=corpus)
    app = create_app(settings, lambda _: Engine(backend, {}, Prompt("chat")))
    for client in serve(app):
        wait_ready(client)
        response = client.get("/v1/documents")
        assert response.status_code == 409 and "AGENT_DOCUMENTS" in response.json()["error"]


def test_a_conversation_carries_its_history_and_survives_a_restart(backend, tmp_path):
    settings = Settings(tools=[], data_dir=tmp_path / "data")

    def engine(_: Settings) -> Engine:
        return Engine(backend, {"Echo": EchoTool()}, Prompt("chat"))

    for client in serve(create_app(settings, engine)):
        wait_ready(client)
        backend.queue("Paris is the capital of France.")
        first = client.post("/v1/ask", json={"question": "Capital of France?"}).json()
        conversation = first["conversation_id"]
        assert conversation and len(conversation) == 32
        backend.queue("About 2.1 million people.")
        body = {"question": "And its population?", "conversation_id": conversation}
        second = client.post("/v1/ask", json=body).json()
        assert second["conversation_id"] == conversation
        prompt = backend.prompts[-1]
        assert prompt.index("Capital of France?") < prompt.index("Paris is the capital of France.")
        assert prompt.index("Paris is the capital") < prompt.index("And its population?")

    for client in serve(create_app(settings, engine)):  # a new process, the same data folder
        wait_ready(client)
        listed = client.get("/v1/conversations").json()
        assert [(c["id"], c["turns"], c["title"]) for c in listed] == [
            (conversation, 2, "Capital of France?")
        ]
        detail = client.get(f"/v1/conversations/{conversation}").json()
        assert [t["answer"] for t in detail["turns"]] == [
            "Paris is the capital of France.",
            "About 2.1 million people.",
        ]
        assert client.delete(f"/v1/conversations/{conversation}").status_code == 204
        assert client.get(f"/v1/conversations/{conversation}").status_code == 404
        unknown = client.post("/v1/ask", json={"question": "x", "conversation_id": conversation})
        assert unknown.status_code == 404 and conversation in unknown.json()["error"]


def test_an_answer_cut_off_mid_stream_writes_no_turn(client, backend):
    backend.queue("word " * 2000)
    with client.stream("POST", "/v1/ask", json={"question": "q", "stream": True}) as response:
        for _ in response.iter_lines():
            break
    wait_idle(client)
    assert client.get("/v1/conversations").json() == []


def test_a_full_queue_is_429_with_retry_after(backend):
    settings = Settings(tools=[], max_active_answers=1, max_queued_answers=0)
    app = create_app(settings, lambda _: Engine(backend, {"Slow": SlowTool()}, Prompt("chat")))
    for client in serve(app):
        wait_ready(client)
        backend.queue(['[Slow("1.0")', " done."])
        with client.stream("POST", "/v1/ask", json={"question": "q", "stream": True}) as busy:
            lines = busy.iter_lines()  # kept: a dropped iterator closes the stream
            assert next(lines) == "event: token"  # the first answer holds the only slot
            refused = client.post("/v1/ask", json={"question": "another"})
            assert refused.status_code == 429 and "retry-after" in refused.headers
            assert "error" in refused.json()
            streamed = client.post("/v1/ask", json={"question": "another", "stream": True})
            assert streamed.status_code == 429
            assert list(lines)[-2].startswith('data: {"answer":"done."')  # unharmed


def test_metrics_count_answers_tokens_and_tool_calls(client, backend):
    backend.queue(['It is [Echo("olleh")', " hello."])
    client.post("/v1/ask", json={"question": "Say hello"})
    text = client.get("/metrics").text
    assert 'agent_tool_calls_total{outcome="ok",tool="Echo"} 1.0' in text
    assert 'route="/v1/ask"' in text
    assert "agent_tokens_total" in text
