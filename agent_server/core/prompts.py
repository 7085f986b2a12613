"""Few-shot prompts that teach the inline call syntax, rendered from files in `prompts/`.

`toolformer.j2` holds the instructions and lists each tool by the name and description it
registers; `examples/<ToolName>.txt` holds that tool's worked examples, with real results.
Two styles: "chat" puts instructions and examples in the system turn of the model's chat
template; "plain" is one completion text ending in `Answer:`, for models whose chat template
hurts (SmolLM2). The README records which style the default model answers best with.

Earlier turns of a conversation go before the new question in the examples' own form,
`Question: …` / `Answer: …`: answers only (calls and their results stripped), whitespace
normalised. In the chat style they open the user message; in the plain style they follow the
examples. Only the last `history_turns` turns (6) that fit in `history_chars` characters (3000,
about 750 tokens) are kept, newest first, so a long conversation cannot crowd out the question;
the newest turn is always kept, clipped if it alone is over the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import jinja2

from agent_server.backends.base import Backend
from agent_server.core.grammar import strip_calls
from tools.base import Tool

if TYPE_CHECKING:
    from agent_server.core.strategies import Strategy

PromptStyle = Literal["chat", "plain"]
Framing = Literal["few_shot", "chat"]
CHAT_STOPS = ("\nQuestion:", "\n\n")
# A completion prompt's answers are one line each; without a newline stop a small model runs on.
PLAIN_STOPS = ("\nQuestion:", "\n")
# Reasoning runs over several lines and paragraphs (and programs hold blank lines): it ends at
# the end of the model's turn, or where it starts on a question of its own.
REASONING_STOPS = ("\nQuestion:",)
# A small model's context is short and the examples already take most of it: about 750 tokens
# of history keeps a follow-up's referents without crowding out the question.
HISTORY_TURNS = 6
HISTORY_CHARS = 3000


@dataclass(frozen=True)
class Rendered:
    text: str
    stop: tuple[str, ...]
    # The start of `text` that does not depend on the question or the history: the same for
    # every answer with these tools, so its KV cache can be computed once (`PrefixCache`).
    prefix: str = ""


class Prompt:
    """One strategy's prompt (`strategies.Strategy`): a system turn from `template` (or the chat
    template's own, when None) and the question put in one of two framings:

    - "few_shot": `Question: …` and an `Answer:` cue for the model to continue, the worked
      examples in the system turn (each tool's own, or the file `examples`);
    - "chat": the question (through `question_template`, if given) as the user's message, the
      model answering in its own turn; it stops at its end-of-turn token.
    """

    def __init__(
        self,
        style: PromptStyle = "chat",
        template: str | None = "toolformer.j2",
        folder: Path | None = None,
        history_turns: int = HISTORY_TURNS,
        history_chars: int = HISTORY_CHARS,
        *,
        examples: str | None = None,
        framing: Framing = "few_shot",
        question_template: str | None = None,
        stops: tuple[tuple[str, ...], tuple[str, ...]] = (CHAT_STOPS, PLAIN_STOPS),
    ) -> None:
        self.style = style
        self.history_turns = history_turns
        self.history_chars = history_chars
        self.framing = framing
        self._folder = folder
        self._template = load_template(template, folder) if template else None
        self._examples_file = examples
        self._question = load_template(question_template, folder) if question_template else None
        self._stops = stops

    @classmethod
    def for_strategy(cls, strategy: Strategy, like: Prompt) -> Prompt:
        """`strategy`'s prompt, in the style (and folder, history caps) of `like`."""
        multiline = (REASONING_STOPS, REASONING_STOPS)
        return cls(
            like.style,
            strategy.system,
            like._folder,
            like.history_turns,
            like.history_chars,
            examples=strategy.examples,
            framing=strategy.framing,
            question_template=strategy.question_template,
            stops=multiline if strategy.name != "toolformer" else like._stops,
        )

    def _read(self, name: str) -> str:
        return read_prompt(name, self._folder)

    def _examples(self, tools: Sequence[Tool], functions: bool) -> list[str]:
        if self._examples_file is not None:
            return [self._read(self._examples_file).strip()]
        blocks = []
        for name in [t.name for t in tools] or ["none"]:
            try:
                blocks.append(self._read(f"examples/{name}.txt").strip())
            except FileNotFoundError:
                continue  # a tool without examples is still listed with its own example call
        if functions:
            # The client's functions come without worked examples: these show a call whose
            # result (sent back by the client) the sentence after it uses. Without them the
            # default model ended its answer at the result. (Not for MCP tools: there they made
            # it pick a wrong tool more often.)
            blocks.append(self._read("examples/functions.txt").strip())
        return blocks

    def instructions(self, tools: Sequence[Tool], functions: bool = False) -> str:
        """The system turn; `functions`: some of `tools` are the client's functions."""
        if self._template is None:
            return ""
        listed = [
            {"name": t.name, "description": t.description, "example": t.example} for t in tools
        ]
        examples = self._examples(tools, functions)
        return self._template.render(tools=listed, examples=examples).strip()

    def render(
        self,
        backend: Backend,
        question: str,
        tools: Sequence[Tool],
        history: Sequence[tuple[str, str]] = (),
        *,
        functions: bool = False,
    ) -> Rendered:
        system = self.instructions(tools, functions) if self._template is not None else None
        turns = self.fit_history(history)
        earlier = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in turns)
        if self.framing == "chat":
            asked = _normalise(question)
            if self._question is not None:
                asked = self._question.render(question=asked).strip()
            return exchange(backend, self.style, system, earlier + asked, "", self._stops)
        asked = f"Question: {_normalise(question)}"
        return exchange(backend, self.style, system, earlier + asked, "Answer:", self._stops)

    def fit_history(self, history: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The turns the prompt keeps: the newest that fit the caps, normalised, oldest first."""
        if self.history_turns <= 0 or self.history_chars <= 0:
            return []
        kept: list[tuple[str, str]] = []
        used = 0
        for question, answer in reversed(history[-self.history_turns :]):
            turn = _normalise(question), _normalise(strip_calls(answer))
            if not turn[1]:
                continue  # an empty answer would teach the model to answer with nothing
            size = len(turn[0]) + len(turn[1])
            if used + size > self.history_chars:
                if not kept:  # the newest turn alone is over the budget: keep its start
                    half = self.history_chars // 2
                    q = _clip(turn[0], half)
                    kept.append((q, _clip(turn[1], self.history_chars - len(q))))
                break
            kept.append(turn)
            used += size
        return kept[::-1]


def read_prompt(name: str, folder: Path | None = None) -> str:
    """A file of `prompts/` (or of `folder`), as text."""
    if folder is not None:
        return (folder / name).read_text(encoding="utf-8")
    return resources.files("prompts").joinpath(name).read_text(encoding="utf-8")


def load_template(name: str, folder: Path | None = None) -> jinja2.Template:
    """A Jinja2 template of `prompts/`; a value it names but is not given is an error."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(read_prompt(name, folder))


def exchange(
    backend: Backend,
    style: PromptStyle,
    system: str | None,
    user: str,
    cue: str,
    stops: tuple[tuple[str, ...], tuple[str, ...]],
) -> Rendered:
    """One exchange ending in `cue` for the model to continue; `stops` is (chat, plain).

    The chat style puts `system` and `user` into the model's chat template (`system` None: the
    template's own) and falls back to the plain style when the model has none; the prefix is
    everything before `user`.
    """
    if style == "chat":
        chat = backend.chat_prompt(system, user)
        if chat is not None:
            at = chat.rfind(user)  # a template that rewrites the message gets no prefix
            return Rendered(chat + cue, stops[0], chat[:at] if at > 0 else "")
    head = f"{system}\n\n" if system else ""
    return Rendered(f"{head}{user}\n{cue or 'Answer:'}", stops[1], head)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"
