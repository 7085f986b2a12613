"""WebGPT mode with the real default model over the offline SQuAD web (data/squad_passages.jsonl):
its quotes hold the answer and every marker in its answer names one of them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_server.core.events import FinalEvent
from agent_server.runtime import open_pages
from agent_server.webgpt.agent import WebGPT
from agent_server.webgpt.citations import MARKER_NUMBERS
from agent_server.webgpt.pages import PageFetcher
from tools.search import Search
from tools.search_local import LocalSearchBackend

CORPUS = Path(__file__).resolve().parents[2] / "data" / "squad_passages.jsonl"
pytestmark = pytest.mark.model


@pytest.mark.parametrize(
    ("question", "gold"),
    [
        ("How many times has the South Florida/Miami area hosted the Super Bowl?", "10"),
        ("How many women were employed in construction in 2011?", "828,000"),
    ],
)
def test_real_model_answers_from_quotes_with_valid_citations(real_engine, question, gold):
    search = Search(LocalSearchBackend(CORPUS))
    fetcher = PageFetcher()
    agent = WebGPT(real_engine, search.results, open_pages(search, fetcher), style="chat")

    async def go() -> FinalEvent:
        try:
            events = [e async for e in agent.stream(question)]
        finally:
            await fetcher.aclose()
        assert isinstance(events[-1], FinalEvent)
        return events[-1]

    final = asyncio.run(go())
    assert any(gold in q.text for q in final.quotes)
    with CORPUS.open(encoding="utf-8") as lines:
        pages = {d["doc_id"]: d["text"] for d in map(json.loads, lines)}
    assert all(q.text in pages[q.url.removeprefix("doc://")] for q in final.quotes)  # verbatim
    markers = [int(n) for n in MARKER_NUMBERS.findall(final.answer)]
    assert markers, final.answer
    assert set(markers) <= {q.number for q in final.quotes}
    assert gold in final.answer


def test_cli_asks_in_webgpt_mode_and_prints_references(tmp_path):
    env = {
        **os.environ,
        "AGENT_SEARCH_BACKEND": "local",
        "AGENT_SEARCH_CORPUS": str(CORPUS),
        "AGENT_INDEX_DIR": str(tmp_path / "index"),
        "AGENT_TOOLS": '["Search"]',
    }
    question = "How many times has the South Florida/Miami area hosted the Super Bowl?"
    done = subprocess.run(
        [sys.executable, "-m", "agent_server.cli", "ask", "--mode", "webgpt", "--json", question],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["quotes"] and answer["references"]
    assert answer["references"][0]["url"].startswith("doc://squad-dev-")
    cited = {int(n) for n in MARKER_NUMBERS.findall(answer["answer"])}
    assert cited and cited <= {q["number"] for q in answer["quotes"]}
