"""Builds the running engine from settings: the model (loaded once), the tools and the prompt."""

from __future__ import annotations

from agent_server.backends import load_backend
from agent_server.engine import Engine, EngineConfig
from agent_server.prompts import Prompt
from agent_server.settings import Settings
from tools.registry import ToolOptions, build_registry


def build_engine(settings: Settings) -> Engine:
    backend, source = load_backend(
        settings.model, settings.cache_dir, dtype=settings.dtype, threads=settings.threads
    )
    style = source.prompt_style if settings.prompt_style == "auto" else settings.prompt_style
    tools = build_registry(
        settings.tools, ToolOptions(calculator_timeout_s=settings.calculator_timeout_s)
    )
    config = EngineConfig(
        max_calls=settings.max_calls,
        call_timeout_s=settings.call_timeout_s,
        call_top_k=settings.call_top_k,
    )
    # Token pieces and the call-rule masks take ~0.5 s on a 150k vocabulary: pay it at start-up,
    # not inside the first request.
    backend.vocab.call_openers()
    backend.vocab.allowed_after("", tuple(sorted(tools)))
    return Engine(backend, tools, Prompt(style), config)
