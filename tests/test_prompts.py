"""Prompt rendering from the files in prompts/."""

from __future__ import annotations

import jinja2
import pytest
from doubles import EchoTool

from agent_server.backends.scripted import ScriptedBackend
from agent_server.prompts import CHAT_STOPS, PLAIN_STOPS, Prompt
from tools.calculator import Calculator


def test_instructions_list_each_tool_and_its_examples():
    calculator = Calculator()
    text = Prompt().instructions([calculator, EchoTool()])
    calculator.close()
    assert f"- Calculator: {calculator.description} Example: [Calculator(400/1400)]" in text
    assert "- Echo: Echoes its input backwards." in text
    assert "[Calculator(400/1400) → 0.2857] 0.2857." in text  # Calculator's worked examples
    assert text.count("Question:") == text.count("Answer:") >= 4


def test_without_tools_there_is_no_tool_section():
    text = Prompt().instructions([])
    assert "Tools:" not in text and "[Calculator(" not in text
    assert "Question: What is the capital of France?" in text


def test_plain_style_is_one_completion_text():
    rendered = Prompt("plain").render(ScriptedBackend(), "Why?", [EchoTool()])
    assert rendered.text.endswith("\n\nQuestion: Why?\nAnswer:")
    assert rendered.stop == PLAIN_STOPS


def test_chat_style_uses_the_model_template():
    rendered = Prompt("chat").render(ScriptedBackend(), "Why?", [EchoTool()])
    assert rendered.text.startswith("<system>You answer questions")
    assert rendered.text.endswith("<user>Question: Why?</user>\n<assistant>Answer:")
    assert rendered.stop == CHAT_STOPS


def test_template_folder_override_and_strict_undefined(tmp_path):
    (tmp_path / "mine.j2").write_text("Tools: {{ tools | map(attribute='name') | join(', ') }}")
    assert Prompt(template="mine.j2", folder=tmp_path).instructions([EchoTool()]) == "Tools: Echo"
    (tmp_path / "broken.j2").write_text("{{ no_such_variable }}")
    with pytest.raises(jinja2.UndefinedError):
        Prompt(template="broken.j2", folder=tmp_path).instructions([])
