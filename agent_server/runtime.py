"""Builds the running engine from settings: the model (loaded once), the tools and the prompt;
and WebGPT mode around that engine: its search, its pages and its budget."""

from __future__ import annotations

from agent_server.backends import Backend, load_backend
from agent_server.core.engine import Engine, EngineConfig
from agent_server.core.lookup import LookupConfig
from agent_server.core.prefix_cache import SavedPrefixes
from agent_server.core.prompts import Prompt, PromptStyle
from agent_server.errors import ConfigError, PageError
from agent_server.models import ModelSource
from agent_server.settings import Settings
from agent_server.webgpt.agent import WebGPT, WebGPTConfig
from agent_server.webgpt.browser import BrowserLimits, OpenPage
from agent_server.webgpt.pages import PageFetcher
from agent_server.webgpt.readable import Page, plain_page
from tools.base import Tool
from tools.embedder import EmbedderNotAvailable
from tools.mcp_servers import McpError
from tools.registry import build_registry, close_registry, start_tools
from tools.search import Search
from tools.search_local import LocalSearchBackend


def build_tools(settings: Settings) -> dict[str, Tool]:
    if settings.documents is None:  # the default folder, ready for the first upload
        settings.documents_path.mkdir(parents=True, exist_ok=True)
    try:
        return build_registry(settings.tools, settings.tool_options())
    except (ValueError, EmbedderNotAvailable, McpError) as exc:  # say which setting, not a trace
        raise ConfigError(str(exc)) from exc


def load_model(settings: Settings) -> tuple[Backend, ModelSource]:
    """The model on the backend the settings choose."""
    return load_backend(
        settings.model,
        settings.cache_dir,
        kind=settings.backend,
        dtype=settings.dtype,
        threads=settings.threads,
        context_tokens=settings.context_tokens,
        remote=settings.remote(),
    )


def prompt_style(settings: Settings, source: ModelSource) -> PromptStyle:
    """The prompt style: the setting's, or on "auto" the one the model is known to answer best."""
    return source.prompt_style if settings.prompt_style == "auto" else settings.prompt_style


def build_engine(settings: Settings, tools: dict[str, Tool] | None = None) -> Engine:
    """The engine on the model and tools the settings choose (`tools`: ones already built)."""
    owned = tools is None
    # First: a bad tool setting fails before a minute of loading.
    tools = build_tools(settings) if tools is None else tools
    try:
        backend, source = load_model(settings)
    except BaseException:
        if owned:
            close_registry(tools)
        raise
    # Only now: an index build embeds with transformers in a thread of its own, and two threads
    # importing from transformers at once can fail ("cannot import name 'AutoModelForCausalLM'").
    start_tools(tools)  # spare processes and indexes warm up in the background
    style = prompt_style(settings, source)
    config = EngineConfig(
        max_calls=settings.max_calls,
        call_timeout_s=settings.call_timeout_s,
        call_top_k=settings.call_top_k,
        strategy=settings.strategy,
        samples=settings.samples,
        sample_temperature=settings.sample_temperature,
        lookup=LookupConfig(max_draft=settings.prompt_lookup) if settings.prompt_lookup else None,
    )
    # Token pieces and the call-rule masks take ~0.5 s on a 150k vocabulary: pay it at start-up,
    # not inside the first request.
    backend.vocab.call_openers()
    backend.vocab.allowed_after("", tuple(sorted(tools)))
    saved = SavedPrefixes(settings.cache_dir / "prompts") if settings.prompt_cache else None
    return Engine(backend, tools, Prompt(style), config, owns_backend=True, saved_prefixes=saved)


def build_webgpt(settings: Settings, engine: Engine) -> WebGPT:
    """WebGPT mode on `engine`'s model, searching with its Search tool (or one of its own)."""
    search = engine.tools.get("Search")
    if not isinstance(search, Search):
        search = build_registry(["Search"], settings.tool_options())["Search"]
        assert isinstance(search, Search)
        search.start()
    fetcher = PageFetcher(
        timeout_s=settings.webgpt_page_timeout_s,
        max_bytes=settings.webgpt_page_bytes,
        allow_private=settings.webgpt_allow_private,
    )
    limits = BrowserLimits(
        max_pages=settings.webgpt_max_pages,
        max_quotes=settings.webgpt_max_quotes,
        max_quote_chars=settings.webgpt_quote_chars,
    )
    config = WebGPTConfig(
        policy=settings.webgpt_policy,
        max_actions=settings.webgpt_max_actions,
        time_limit_s=settings.webgpt_time_limit_s,
        limits=limits,
    )
    return WebGPT(
        engine,
        search.results,
        open_pages(search, fetcher),
        config,
        engine.prompt.style,
        on_close=fetcher.aclose,
    )


def open_pages(search: Search, fetcher: PageFetcher) -> OpenPage:
    """Opens a result: `doc://` pages from the local corpus, http(s) pages from the web."""

    async def open_page(url: str) -> Page:
        if url.startswith("doc://"):
            if not isinstance(search.backend, LocalSearchBackend):
                raise PageError(f"could not open {url}: the search backend has no documents")
            title, text = await search.backend.document(url)
            return plain_page(text, url, title)
        return await fetcher.fetch(url)

    return open_page
