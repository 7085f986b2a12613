"""End to end on the real default model: answers reached *through* tool calls.

These load the embedded model once per test session (see conftest) and run on the CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from serving import wait_ready

from agent_server.core.decoding import Sampling
from agent_server.settings import Settings

pytestmark = [pytest.mark.model, pytest.mark.slow]

# Several operations, multi-digit numbers and decimals; expected values computed here.
ARITHMETIC = [
    ("What is 1234 * 5678?", 1234 * 5678),
    ("What is 98765 + 43210 - 12345?", 98765 + 43210 - 12345),
    ("What is 3.75 times 48.2?", 3.75 * 48.2),
    (
        "A farmer has 347 cows and buys 1289 more. Then he sells 402. How many cows does he have?",
        347 + 1289 - 402,
    ),
    ("What is 7452 divided by 36?", 7452 / 36),
    ("What is 15.6 * 23 + 104.8?", 15.6 * 23 + 104.8),
    ("If a car travels 63.5 km per hour for 7.2 hours, how far does it go?", 63.5 * 7.2),
    ("What is (456 + 789) * 12?", (456 + 789) * 12),
    ("What is 2 to the power of 20?", 2**20),
    ("Tickets cost 23.75 dollars each. How much do 168 tickets cost?", 23.75 * 168),
]


# The one-sentence style with the Calculator alone (the default tools include Python, which the
# 1.5B model prefers for arithmetic: these tests are about the Calculator's inline calls).
CALCULATOR = {
    "strategy": "toolformer",
    "tools": ["Calculator"],
    "sampling": Sampling(max_new_tokens=80),
}


def _close(text: str | None, expected: float) -> bool:
    numbers = re.findall(r"-?\d+(?:\.\d+)?", (text or "").replace(",", ""))
    return bool(numbers) and abs(float(numbers[-1]) - expected) <= 1e-6 * max(1, abs(expected))


def test_arithmetic_is_answered_through_calculator_calls(real_engine):
    async def answer_all():
        return [await real_engine.run(q, **CALCULATOR) for q, _ in ARITHMETIC]

    hits_before = real_engine.prefixes.hits
    finals = asyncio.run(answer_all())
    # The shared start of the prompt (instructions and examples) was read once and reused.
    assert real_engine.prefixes.hits - hits_before >= len(ARITHMETIC) - 1
    report, correct = [], 0
    for (question, expected), final in zip(ARITHMETIC, finals, strict=True):
        via_call = any(
            r.tool == "Calculator" and r.ok and _close(r.result, expected) for r in final.trace
        )
        ok = via_call and _close(final.answer, expected)
        correct += ok
        report.append(f"{'ok ' if ok else 'BAD'} {question} -> {final.text!r}")
    assert correct >= 8, "\n".join(report)


def test_answer_without_tools_has_no_calls(real_engine):
    final = asyncio.run(
        real_engine.run("What is 1234 * 5678?", tools=[], sampling=Sampling(max_new_tokens=40))
    )
    assert final.trace == ()
    assert "[Calculator(" not in final.text


def test_cli_ask_prints_answer_and_trace_and_the_next_process_loads_the_prompt_cache(tmp_path):
    # A cache folder of its own, with the assembled model linked in: the prompt cache starts empty.
    (tmp_path / "gguf").symlink_to(Settings().cache_dir / "gguf")
    env = {**os.environ, "AGENT_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "agent_server.cli", "ask", "--trace", "What is 1234 * 5678?"]

    def ask() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=600, check=True
        )

    done = ask()
    assert "7006652" in done.stdout
    # The default for a question with a number: programs, run in the sandbox, and their vote.
    assert "[program] → Python(" in done.stderr  # each call named by the strategy that made it
    assert "= 7006652" in done.stderr
    assert "votes: 7006652 ×" in done.stderr
    assert re.search(r"\[first token [0-9.]+ s after the process started\]", done.stderr)
    assert "[prompt cache: 0 prompt starts loaded from disk]" in done.stderr
    saved = sorted((tmp_path / "prompts").glob("*.kv"))
    assert len(saved) == 2  # consensus's two members, each its own prompt
    again = ask()
    assert "[prompt cache: 2 prompt starts loaded from disk]" in again.stderr
    assert "7006652" in again.stdout


def test_small_model_loads_and_calls_the_calculator():
    """The small, fast option: SmolLM2-135M with its plain few-shot prompt.

    A 135M model follows one tool's examples, not four tools' (with all of them it searches for
    arithmetic), so it is asked with the calculator alone, as the README advises.
    """
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_server.cli",
            "--model",
            "smollm2-135m",
            "ask",
            "--json",
            "--tools",
            "Calculator",
            "--",
            "What is 1234 * 5678?",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    body = json.loads(done.stdout)
    assert body["model"] == "smollm2-135m"
    assert [(t["tool"], t["result"]) for t in body["trace"]][:1] == [("Calculator", "7006652")]
    assert "\n" not in body["text"]  # one line, as the plain prompt's examples


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_service_answers_over_http_on_loopback(tmp_path):
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "agent_server.cli", "serve", "--port", str(port)],
        env={**os.environ, "AGENT_HOST": "127.0.0.1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            wait_ready(client, 300, server, tmp_path / "serve.log")
            said = (tmp_path / "serve.log").read_text()
            assert f"the chat UI at http://127.0.0.1:{port}/" in said  # where to go, at start
            assert client.get("/healthz").json() == {"status": "ok"}
            body = client.post("/v1/ask", json={"question": "What is 1234 * 5678?"}).json()
            assert "7006652" in body["answer"]
            assert body["strategy"] == "consensus" and body["value"] == "7006652"
            assert ("Python", "7006652") in [(t["tool"], t["result"]) for t in body["trace"]]
            bad = client.post("/v1/ask", json={"question": ""})
            assert bad.status_code == 422
            assert bad.json()["detail"][0]["loc"] == ["body", "question"]
            _upload_a_note_and_ask_about_it(client)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


NOTE = (
    "# Quillfeather boiler\n\n"
    "The Quillfeather boiler in the basement was installed by Harlow & Sons. "
    "Its warranty runs until March 2031 and covers parts and labour.\n"
)


def _upload_a_note_and_ask_about_it(client: httpx.Client) -> None:
    """The default set-up takes uploads (a documents folder under the data folder) and, once
    the note is indexed, the model finds the answer in it through Retrieve."""
    upload = client.post("/v1/documents", files={"file": ("boiler.md", NOTE.encode())})
    assert upload.status_code == 201, upload.text
    deadline = time.monotonic() + 120
    while client.get("/v1/documents").json()[0]["status"] != "ready":
        assert time.monotonic() < deadline, client.get("/v1/documents").json()
        time.sleep(0.5)
    question = "Until when is the Quillfeather boiler under warranty, according to my documents?"
    body = client.post("/v1/ask", json={"question": question}).json()
    calls = [(t["tool"], t["result"] or "") for t in body["trace"]]
    assert any(tool == "Retrieve" and "doc://boiler.md" in result for tool, result in calls), body
    assert "2031" in body["answer"], body
