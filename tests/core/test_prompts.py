"""Prompt rendering from the files in prompts/."""

from __future__ import annotations

import jinja2
import pytest
from doubles import EchoTool

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.prompts import CHAT_STOPS, PLAIN_STOPS, Prompt
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


HISTORY = [("What is 2+2?", "It is 4."), ("And  times\n3?", "It is [Calculator(4*3) → 12] 12.")]


def test_history_goes_before_the_question_in_the_chat_user_message():
    rendered = Prompt("chat").render(ScriptedBackend(), "And minus 1?", [EchoTool()], HISTORY)
    assert rendered.text.endswith(
        "<user>Question: What is 2+2?\nAnswer: It is 4.\n\n"
        "Question: And times 3?\nAnswer: It is 12.\n\n"  # normalised, the call stripped
        "Question: And minus 1?</user>\n<assistant>Answer:"
    )
    assert rendered.stop == CHAT_STOPS


def test_history_goes_before_the_final_question_in_the_plain_style():
    rendered = Prompt("plain").render(ScriptedBackend(), "And minus 1?", [EchoTool()], HISTORY)
    system = Prompt("plain").instructions([EchoTool()])
    assert rendered.text == (
        f"{system}\n\nQuestion: What is 2+2?\nAnswer: It is 4.\n\n"
        "Question: And times 3?\nAnswer: It is 12.\n\nQuestion: And minus 1?\nAnswer:"
    )


def test_empty_history_renders_as_before():
    for style in ("chat", "plain"):
        prompt = Prompt(style)
        without = prompt.render(ScriptedBackend(), "Why?", [EchoTool()])
        assert prompt.render(ScriptedBackend(), "Why?", [EchoTool()], ()) == without


def test_history_is_capped_by_turns_then_by_characters():
    turns = [(f"q{i}", f"a{i}") for i in range(10)]
    assert Prompt(history_turns=3).fit_history(turns) == turns[-3:]
    # Each turn here is 4 characters: a budget of 10 holds the newest two, whole.
    assert Prompt(history_chars=10).fit_history(turns) == turns[-2:]
    assert Prompt(history_turns=0).fit_history(turns) == []


def test_an_oversized_newest_turn_is_clipped_not_dropped():
    fitted = Prompt(history_chars=100).fit_history([("old", "turn"), ("q " * 200, "a " * 200)])
    assert len(fitted) == 1
    question, answer = fitted[0]
    assert question.endswith("…") and answer.endswith("…")
    assert len(question) + len(answer) <= 100


def test_turns_without_an_answer_are_left_out():
    assert Prompt().fit_history([("q1", "a1"), ("q2", "  "), ("q3", "[Echo(x) → y]")]) == [
        ("q1", "a1")
    ]
