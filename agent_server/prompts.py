"""Few-shot prompts that teach the inline call syntax, rendered from files in `prompts/`.

`toolformer.j2` holds the instructions and lists each tool by the name and description it
registers; `examples/<ToolName>.txt` holds that tool's worked examples, with real results.
Two styles: "chat" puts instructions and examples in the system turn of the model's chat
template; "plain" is one completion text ending in `Answer:`, for models whose chat template
hurts (SmolLM2). The README records which style the default model answers best with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import jinja2

from agent_server.backends.base import Backend
from tools.base import Tool

PromptStyle = Literal["chat", "plain"]
CHAT_STOPS = ("\nQuestion:", "\n\n")
# A completion prompt's answers are one line each; without a newline stop a small model runs on.
PLAIN_STOPS = ("\nQuestion:", "\n")


@dataclass(frozen=True)
class Rendered:
    text: str
    stop: tuple[str, ...]


class Prompt:
    def __init__(
        self,
        style: PromptStyle = "chat",
        template: str = "toolformer.j2",
        folder: Path | None = None,
    ) -> None:
        self.style = style
        self._folder = folder
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        self._template = env.from_string(self._read(template))

    def _read(self, name: str) -> str:
        if self._folder is not None:
            return (self._folder / name).read_text(encoding="utf-8")
        return resources.files("prompts").joinpath(name).read_text(encoding="utf-8")

    def _examples(self, tools: Sequence[Tool]) -> list[str]:
        blocks = []
        for name in [t.name for t in tools] or ["none"]:
            try:
                blocks.append(self._read(f"examples/{name}.txt").strip())
            except FileNotFoundError:
                continue  # a tool without examples is still listed with its own example call
        return blocks

    def instructions(self, tools: Sequence[Tool]) -> str:
        listed = [
            {"name": t.name, "description": t.description, "example": t.example} for t in tools
        ]
        return self._template.render(tools=listed, examples=self._examples(tools)).strip()

    def render(self, backend: Backend, question: str, tools: Sequence[Tool]) -> Rendered:
        system = self.instructions(tools)
        question = " ".join(question.split())
        if self.style == "chat":
            chat = backend.chat_prompt(system, f"Question: {question}")
            if chat is not None:
                return Rendered(chat + "Answer:", CHAT_STOPS)
        return Rendered(f"{system}\n\nQuestion: {question}\nAnswer:", PLAIN_STOPS)
