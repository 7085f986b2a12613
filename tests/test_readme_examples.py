"""Every example question of the README, asked of the default set-up (model and strategy) over
real HTTP, and each answer checked: a newcomer tries these first.

Offline, as the README's own offline session runs them: Search reads the local SQuAD corpus and
Retrieve the household notes. The questions are read from the README itself, so an example
added there without a check here fails. The chat UI's example questions are checked by
tests/test_reasoning_model.py, and the MCP time server's by tests/tools/test_mcp_servers.py
(they need settings of their own: the web unreachable, an MCP server).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from serving import served_process

from agent_server.core.numbers import last_number, same_number

pytestmark = [pytest.mark.model, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {
    "AGENT_SEARCH_BACKEND": "local",
    "AGENT_SEARCH_CORPUS": str(ROOT / "data" / "squad_passages.jsonl"),
    "AGENT_DOCUMENTS": str(ROOT / "tests" / "data" / "documents"),
}


@dataclass(frozen=True)
class Example:
    """What the README asks with (its request's other fields) and what the answer must say:
    a number, or words of which one must appear."""

    expected: float | tuple[str, ...]
    request: dict[str, Any] = field(default_factory=dict)


EXAMPLES: dict[str, Example] = {
    "What is 1234 * 5678?": Example(1234 * 5678),
    "Tickets cost 23.75 dollars each. How much do 168 tickets cost?": Example(168 * 23.75),
    "Who wrote Pride and Prejudice?": Example(("Austen",)),
    "According to my documents, who serviced the boiler in May 2024?": Example(
        ("Northside Heating", "Priya Shah"), {"tools": ["Retrieve"]}
    ),
    "What is the largest city in Poland?": Example(("Warsaw",), {"tools": ["Search"]}),
    "How many times has the South Florida/Miami area hosted the Super Bowl?": Example(
        ("10", "ten"), {"mode": "webgpt"}
    ),
}
CHECKED_ELSEWHERE = {"What time is it in Tokyo?": ROOT / "tests/tools/test_mcp_servers.py"}


def readme_questions() -> set[str]:
    """The questions the README asks the service: `"question": "…"` bodies, and the quoted
    argument of `agent-server ask` commands (on the command's line or the next)."""
    text = (ROOT / "README.md").read_text()
    asked = set(re.findall(r'"question": "([^"]+)"', text))
    for command in re.finditer(r"agent-server ask\b([^\n]*(?:\\\n[^\n]*)*)", text):
        asked.update(re.findall(r'"([^"]+\?)"', command.group(1)))
    return asked


def said(answer: str, expected: float | tuple[str, ...]) -> bool:
    if isinstance(expected, tuple):
        return any(re.search(rf"\b{re.escape(word)}\b", answer, re.IGNORECASE) for word in expected)
    return same_number(last_number(answer.replace(",", "")), float(expected))


def test_every_readme_example_question_has_a_check():
    asked = readme_questions()
    assert len(asked) >= 7  # the reader above still finds the README's examples
    assert sorted(asked - EXAMPLES.keys() - CHECKED_ELSEWHERE.keys()) == []
    for question, test_file in CHECKED_ELSEWHERE.items():
        assert question in test_file.read_text()


def test_the_readme_examples_are_answered_right(tmp_path: Path):
    report, wrong = [], []
    with served_process(tmp_path / "serve.log", OFFLINE) as client:
        for question, example in EXAMPLES.items():
            response = client.post("/v1/ask", json={"question": question, **example.request})
            assert response.status_code == 200, response.text
            body = response.json()
            calls = [
                (t["tool"], (t["result"] or f"error: {t['error']}")[:60]) for t in body["trace"]
            ]
            line = f"{question} -> {body['answer']!r} [{body['strategy']}] {calls}"
            report.append(line)
            if not said(body["answer"], example.expected):
                wrong.append(line)
            if "tools" in example.request:  # the tool the example shows is the one used
                assert {t["tool"] for t in body["trace"]} & set(example.request["tools"]), line
            if example.request.get("mode") == "webgpt":  # an answer with its references
                assert body["references"] and "[1]" in body["answer"], line
    (tmp_path / "report.txt").write_text("\n".join(report))  # kept when the test fails
    assert wrong == [], "\n".join(report)
