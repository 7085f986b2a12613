"""The one place where tools are registered: names to constructors, built from options.

The registry is just a dict of name → tool. Options are a plain dataclass so that `tools`
does not depend on the service's settings; the service maps its settings onto it. Each factory
imports its tool's module when called, so listing tools never loads torch, sympy or bm25s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tools.base import Tool


@dataclass(frozen=True)
class ToolOptions:
    calculator_timeout_s: float = 5.0
    python_timeout_s: float = 5.0
    python_memory_mb: int = 1024
    # "ddgs" searches the live web; "local" searches `search_corpus` with BM25, offline.
    search_backend: Literal["ddgs", "local"] = "ddgs"
    search_corpus: Path | None = None
    search_engines: str = "duckduckgo"
    search_region: str = "us-en"
    search_safesearch: Literal["on", "moderate", "off"] = "moderate"
    search_results: int = 3
    search_proxy: str | None = None  # http, https or socks5 URL for the live web search
    # Per request. Two tries and the first back-off (4 + 1 + 4 s) fit in the engine's 10 s limit.
    search_timeout_s: float = 4.0
    # The user's own documents for Retrieve: a folder, a file or a JSONL of {doc_id,title,text}.
    documents: Path | None = None
    # Where Retrieve keeps its index between runs; rebuilt when the documents change.
    index_dir: Path = Path.home() / ".cache" / "agent-server" / "index"
    # Retrieve's embeddings in Qdrant (http(s)://host:6333, a folder, :memory:); None: index_dir.
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    # MCP servers whose tools join these (`tools.mcp_servers`): a name → {"command", "args",
    # "env"} for stdio, or {"url"} for Streamable HTTP.
    mcp_servers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _calculator(o: ToolOptions) -> Tool:
    from tools.calculator import Calculator

    return Calculator(timeout_s=o.calculator_timeout_s)


def _python(o: ToolOptions) -> Tool:
    from tools.python_sandbox import PythonSandbox

    return PythonSandbox(timeout_s=o.python_timeout_s, memory_bytes=o.python_memory_mb << 20)


def _search(o: ToolOptions) -> Tool:
    from tools.search import Search, SearchBackend

    backend: SearchBackend
    if o.search_backend == "local":
        from tools.search_local import LocalSearchBackend

        if o.search_corpus is None:
            raise ValueError("the local search backend needs a corpus (AGENT_SEARCH_CORPUS)")
        backend = LocalSearchBackend(o.search_corpus, index_dir=o.index_dir / "search")
    else:
        from tools.search_ddgs import DdgsBackend

        backend = DdgsBackend(
            engines=o.search_engines,
            region=o.search_region,
            safesearch=o.search_safesearch,
            timeout_s=o.search_timeout_s,
            proxy=o.search_proxy,
        )
    return Search(backend, max_results=o.search_results)


def _retrieve(o: ToolOptions) -> Tool:
    from tools.retrieval import Retrieve

    if o.documents is None:
        raise ValueError("Retrieve needs the documents to search (AGENT_DOCUMENTS)")
    qdrant = None
    if o.qdrant_url:
        from tools.vectors import qdrant_client

        qdrant = qdrant_client(o.qdrant_url, o.qdrant_api_key)
    return Retrieve(o.documents, o.index_dir, qdrant=qdrant)


_FACTORIES: dict[str, Callable[[ToolOptions], Tool]] = {
    "Calculator": _calculator,
    "Python": _python,
    "Search": _search,
    "Retrieve": _retrieve,
}
TOOL_NAMES = tuple(_FACTORIES)


def default_tools(options: ToolOptions) -> list[str]:
    """Every tool that can work with these options: Retrieve only with a documents path (it is
    offered to the model only once the path holds documents: `Retrieve.offered`)."""
    return [n for n in TOOL_NAMES if n != "Retrieve" or options.documents is not None]


def build_registry(
    names: Iterable[str] | None = None, options: ToolOptions | None = None
) -> dict[str, Tool]:
    """Tools by name (default: `default_tools`); an unknown name is an error listing the known."""
    options = options or ToolOptions()
    wanted = default_tools(options) if names is None else list(names)
    unknown = [n for n in wanted if n not in _FACTORIES]
    if unknown:
        raise ValueError(f"unknown tools {unknown}; known: {list(TOOL_NAMES)}")
    built: dict[str, Tool] = {}
    try:
        for name in wanted:
            built[name] = _FACTORIES[name](options)
        if options.mcp_servers:
            from tools.mcp_servers import connect

            served = connect(options.mcp_servers)
            clash = sorted(set(served) & set(built))
            if clash:
                for tool in served.values():
                    tool.close()
                raise ValueError(f"MCP servers list tools named like built-in ones: {clash}")
            built.update(served)
    except BaseException:
        close_registry(built)  # don't leave warm worker processes behind
        raise
    return built


def start_tools(tools: Mapping[str, Tool]) -> None:
    """Begin each tool's warm-up in the background (spare processes, indexes); returns at once."""
    for tool in tools.values():
        tool.start()


def prepare_tools(tools: Mapping[str, Tool]) -> None:
    """Finish each tool's slow preparation now (build or load indexes), raising what it raised;
    a tool with nothing to work on yet (Retrieve before any document) is left for later."""
    for tool in tools.values():
        if tool.offered():
            tool.prepare()


def close_registry(tools: Mapping[str, Tool]) -> None:
    """Stop whatever processes the tools keep warm."""
    for tool in tools.values():
        tool.close()
