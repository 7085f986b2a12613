"""End to end on the real default model: answers reached through Search, Python and Retrieve.

Search runs on the local BM25 backend over the SQuAD passages in `data/` (the live web
can't be reached here); Retrieve indexes the small household documents in `tests/data/documents`
with the real embedder; Python runs in the real sandbox. Each question names its tool, as an API
client may, and the strategy that answers in a sentence around one call (toolformer): small
models follow one tool's examples better than four tools' at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_server.core.decoding import Sampling
from agent_server.core.engine import Engine
from agent_server.core.events import FinalEvent
from tools.registry import ToolOptions, build_registry, prepare_tools

pytestmark = [pytest.mark.model, pytest.mark.slow]

SQUAD = Path(__file__).resolve().parents[1] / "data" / "squad_passages.jsonl"
DOCUMENTS = Path(__file__).parent / "data" / "documents"


@pytest.fixture(scope="module")
def engine(real_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    options = ToolOptions(
        search_backend="local",
        search_corpus=SQUAD,
        documents=DOCUMENTS,
        index_dir=tmp_path_factory.mktemp("index"),
    )
    tools = build_registry(["Search", "Python", "Retrieve"], options)
    prepare_tools(tools)  # both indexes built before the first question, as `prepare` does
    built = Engine(real_engine.backend, tools, real_engine.prompt, real_engine.config)
    yield built
    built.close()


def _ask(engine: Engine, question: str, tool: str) -> FinalEvent:
    sampling = Sampling(max_new_tokens=80)
    return asyncio.run(engine.run(question, strategy="toolformer", sampling=sampling, tools=[tool]))


def test_search_on_the_local_backend(engine):
    final = _ask(engine, "What is the largest city in Poland?", "Search")
    (call, *_) = final.trace
    assert call.tool == "Search" and call.error is None
    assert call.result is not None and call.result.startswith("1. Warsaw — ")
    assert "(doc://squad-dev-" in call.result
    assert f"[Search({call.argument!r}".replace("'", '"') in final.text  # the call, in the text
    assert "Warsaw" in final.answer and "[" not in final.answer


def test_python_in_the_sandbox(engine):
    question = "What is the sum of the cubes of the whole numbers from 1 to 10?"
    final = _ask(engine, question, "Python")
    assert [(c.tool, c.result) for c in final.trace] == [("Python", "3025")]
    assert "**3" in final.trace[0].argument
    assert "3025" in final.answer


@pytest.mark.parametrize(
    ("question", "fact", "document"),
    [
        (
            "According to my documents, who serviced the boiler in May 2024?",
            "Northside Heating",
            "doc://boiler-service.md",
        ),
        ("What is my home insurance policy number?", "HM-448-2291", "doc://home-insurance.txt"),
    ],
)
def test_retrieve_over_the_users_documents(engine, question, fact, document):
    final = _ask(engine, question, "Retrieve")
    (call, *_) = final.trace
    assert call.tool == "Retrieve" and call.error is None
    assert call.result is not None and call.result.splitlines()[0].endswith(f"({document})")
    assert fact in final.answer
