"""Builds the running engine from settings: the model (loaded once), the tools and the prompt."""

from __future__ import annotations

from agent_server.backends import load_backend
from agent_server.engine import Engine, EngineConfig
from agent_server.errors import ConfigError
from agent_server.prompts import Prompt
from agent_server.settings import Settings
from tools.base import Tool
from tools.embedder import EmbedderNotAvailable
from tools.registry import build_registry, close_registry, start_tools


def build_tools(settings: Settings) -> dict[str, Tool]:
    try:
        return build_registry(settings.tools, settings.tool_options())
    except (ValueError, EmbedderNotAvailable) as exc:  # say which setting, don't trace back
        raise ConfigError(str(exc)) from exc


def build_engine(settings: Settings) -> Engine:
    tools = build_tools(settings)  # first: a bad tool setting fails before a minute of loading
    start_tools(tools)  # spare processes and indexes warm up while the model loads
    try:
        backend, source = load_backend(
            settings.model, settings.cache_dir, dtype=settings.dtype, threads=settings.threads
        )
    except BaseException:
        close_registry(tools)
        raise
    style = source.prompt_style if settings.prompt_style == "auto" else settings.prompt_style
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
