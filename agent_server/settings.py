"""All settings in one validated place: environment variables `AGENT_…`, or a `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_server.backends import BackendKind
from agent_server.backends.remote import RemoteConfig
from agent_server.core.strategies import CHOICES, DEFAULT_SAMPLES, DEFAULT_STRATEGY, MAX_SAMPLES
from agent_server.models import DEFAULT_MODEL
from tools.registry import TOOL_NAMES, ToolOptions


class McpServerSpec(BaseModel):
    """One MCP server in `AGENT_MCP_SERVERS`: a command (stdio) or a URL, not both."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    url: str | None = Field(None, pattern=r"^https?://")

    @model_validator(mode="after")
    def _one_way(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs either a command (stdio) or a url, not both")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENT_", env_file=".env", extra="ignore")

    # An embedded model's name, a .gguf file, a model folder, or a hub id already cached locally.
    model: str = DEFAULT_MODEL
    # "auto": llama.cpp when it is installed and the model is a GGUF (3x faster here on a CPU,
    # benchmarks/), else transformers.
    backend: BackendKind = "auto"
    # transformers only: bf16 decodes faster than fp32 on this class of CPU (benchmarks/).
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    threads: int = Field(default=0, ge=0, description="model threads; 0: the library's default")
    # llama.cpp only: KV cache cells shared by all answers in progress and the cached prompts.
    context_tokens: int = Field(default=16_384, ge=1_024, le=1_048_576)
    # An inference server speaking OpenAI's completions API (vLLM, TGI, llama.cpp's server):
    # its base URL (without /v1). Set, and `backend` "auto" or "remote", the model runs there;
    # `model` still names the GGUF whose vocabulary is read here.
    remote_url: str | None = None
    remote_model: str | None = None  # the name the server knows the model by; None: `model`
    remote_api_key: SecretStr = SecretStr("")
    remote_top_k: int = Field(default=10, ge=1, le=20)
    # Converted model folders, assembled GGUFs and saved prompt caches; safe to delete, rebuilt
    # on next start.
    cache_dir: Path = Path.home() / ".cache" / "agent-server"
    # llama.cpp only: the KV cache of each prompt's shared start is saved under
    # cache_dir/prompts, so a new process loads it instead of reading the prompt again.
    prompt_cache: bool = True
    # What must survive: the conversations database. Not a cache: never deleted by us.
    data_dir: Path = Path.home() / ".local" / "share" / "agent-server"
    # Conversations and uploaded documents: unset, the SQLite file data_dir/conversations.db;
    # `postgresql://user:password@host/db` to share them between replicas (`sqlite:///path`
    # names another SQLite file).
    database_url: SecretStr | None = None
    # Search's and Retrieve's indexes (rebuilt when missing or stale); default cache_dir/index.
    index_dir: Path | None = None
    prompt_style: Literal["auto", "chat", "plain"] = "auto"

    # None: every tool the settings below allow (Retrieve is offered to the model once there are
    # documents).
    tools: list[str] | None = None
    max_calls: int = Field(default=3, ge=0, le=20)
    call_timeout_s: float = Field(default=10.0, gt=0, le=300)
    call_top_k: int = Field(default=5, ge=0, le=100)
    # None: each strategy's own budget (256 tokens for toolformer's sentences, more for reasoning).
    max_new_tokens: int | None = Field(default=None, ge=1, le=4096)
    # How an answer reasons unless the request says (`strategies`): auto, toolformer, calculator,
    # program or cot; and with how many samples (self-consistency, `consistency`), drawn at
    # `sample_temperature` unless the request sets a temperature.
    strategy: str = DEFAULT_STRATEGY
    samples: int = Field(default=DEFAULT_SAMPLES, ge=1, le=MAX_SAMPLES)
    sample_temperature: float = Field(default=0.7, gt=0, le=2.0)
    # Prompt-lookup speculative decoding on llama.cpp (`core.lookup`): at most this many tokens
    # guessed per step; 0: off.
    prompt_lookup: int = Field(default=0, ge=0, le=16)
    calculator_timeout_s: float = Field(default=5.0, gt=0, le=60)
    python_timeout_s: float = Field(default=5.0, gt=0, le=60)
    python_memory_mb: int = Field(default=1024, ge=256, le=16384)
    # "ddgs" searches the live web (DuckDuckGo); "local" searches `search_corpus`, offline.
    search_backend: Literal["ddgs", "local"] = "ddgs"
    search_corpus: Path | None = None
    search_engines: str = "duckduckgo"
    search_region: str = "us-en"
    search_safesearch: Literal["on", "moderate", "off"] = "moderate"
    search_results: int = Field(default=3, ge=1, le=10)
    # The live web search through a proxy (http, https or socks5 URL), as behind a firewall.
    search_proxy: str | None = None
    # The user's own documents for Retrieve: a folder, a file, or a JSONL of {doc_id,title,text}.
    # A folder also takes uploads, which the database keeps and every replica copies here.
    # None: the folder data_dir/documents (made at start), so uploads work on the default set-up.
    documents: Path | None = None
    # Retrieve's passage embeddings in Qdrant instead of the index folder: a server
    # (http://qdrant:6333, shared by replicas: the first to index a set of documents embeds
    # them, the others reuse the collection), or Qdrant's embedded mode (a folder, :memory:).
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr = SecretStr("")
    # How often a replica copies uploads other replicas took (and their deletions) from the
    # database; listing the documents also does it at once.
    documents_sync_s: float = Field(default=5.0, gt=0, le=3600)
    # MCP servers whose every tool joins the inline tools (JSON): a name → {"command": …,
    # "args": […], "env": {…}} started over stdio, or {"url": …} for Streamable HTTP.
    mcp_servers: dict[str, McpServerSpec] = Field(default_factory=dict)

    # WebGPT mode. "builtin" browses by a fixed plan (search, open the top results, quote the
    # best passage of each) since a small model cannot drive a browser reliably; "model" lets
    # the model choose every command.
    webgpt_policy: Literal["builtin", "model"] = "builtin"
    webgpt_max_actions: int = Field(default=16, ge=1, le=100)
    webgpt_max_pages: int = Field(default=4, ge=1, le=20)
    webgpt_max_quotes: int = Field(default=4, ge=1, le=20)
    webgpt_quote_chars: int = Field(default=600, ge=50, le=5000)
    webgpt_time_limit_s: float = Field(default=60.0, gt=0, le=600)
    webgpt_page_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webgpt_page_bytes: int = Field(default=2_000_000, ge=10_000, le=50_000_000)
    # Pages on loopback or private networks are refused (a model-chosen URL must not reach the
    # server's own network); an intranet deployment or a test's fixture server may allow them.
    webgpt_allow_private: bool = False

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Answers in progress at once; None: what the backend gains from (`Backend.parallel`): 8 on
    # llama.cpp, which decodes their steps in one batch; 2 on transformers, whose steps take
    # turns on one thread (two let a short answer pass a long one).
    max_active_answers: int | None = Field(default=None, ge=1, le=64)
    # Callers beyond this get 429 at once: eight queued at ~5 s an answer, two at a time, wait
    # about 20 s, well inside request_timeout_s; a longer queue would mostly time out.
    max_queued_answers: int = Field(default=8, ge=0, le=1024)
    # Per request, time in the queue included; then 504. The longest answer (256 new tokens at
    # ~70 ms a step, the prefill and its calls) takes about half a minute on 2 CPU cores.
    request_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    # Questions are at most 8,000 characters, but a document upload (a PDF) is often a few MB;
    # 16 MiB fits those while bounding what one request can make the server hold.
    max_body_bytes: int = Field(default=16 << 20, ge=1)
    # Empty: the API is open (as on loopback). Else every route but /healthz and /readyz,
    # /metrics included, needs `Authorization: Bearer <key>`. AGENT_API_KEYS='["k1","k2"]'.
    api_keys: list[SecretStr] = Field(default_factory=list)
    # Origins allowed to call the API from a browser; empty: no CORS headers at all.
    # AGENT_CORS_ORIGINS='["https://example.org"]'.
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, names: list[str] | None) -> list[str] | None:
        unknown = sorted(set(names or ()) - set(TOOL_NAMES))
        if unknown:
            raise ValueError(f"unknown tools {unknown}; known: {list(TOOL_NAMES)}")
        return names

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        if name not in CHOICES:
            raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(CHOICES)}")
        return name

    @field_validator("api_keys")
    @classmethod
    def _non_empty_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        # A header value can't carry an empty key or keep a space in one, so neither could match.
        for key in (k.get_secret_value() for k in keys):
            if not key or any(c.isspace() for c in key):
                raise ValueError("an API key must be non-empty and contain no whitespace")
        return keys

    @model_validator(mode="after")
    def _local_search_has_corpus(self) -> Settings:
        if self.search_backend == "local" and self.search_corpus is None:
            raise ValueError("search_backend 'local' needs search_corpus (AGENT_SEARCH_CORPUS)")
        return self

    def remote(self) -> RemoteConfig | None:
        """The inference server's settings, or None when the model runs here."""
        if not self.remote_url:
            return None
        return RemoteConfig(
            url=self.remote_url,
            model=self.remote_model or self.model,
            api_key=self.remote_api_key.get_secret_value(),
            top_k=max(self.remote_top_k, self.call_top_k),
            timeout_s=self.call_timeout_s + 60,
        )

    @property
    def documents_path(self) -> Path:
        """Where Retrieve's documents are: `documents`, or the default folder under data_dir."""
        return self.documents if self.documents is not None else self.data_dir / "documents"

    def tool_options(self) -> ToolOptions:
        return ToolOptions(
            calculator_timeout_s=self.calculator_timeout_s,
            python_timeout_s=self.python_timeout_s,
            python_memory_mb=self.python_memory_mb,
            search_backend=self.search_backend,
            search_corpus=self.search_corpus,
            search_engines=self.search_engines,
            search_region=self.search_region,
            search_safesearch=self.search_safesearch,
            search_results=self.search_results,
            search_proxy=self.search_proxy,
            documents=self.documents_path,
            index_dir=self.index_dir or self.cache_dir / "index",
            qdrant_url=self.qdrant_url,
            qdrant_api_key=self.qdrant_api_key.get_secret_value() or None,
            mcp_servers={
                name: server.model_dump(exclude_none=True)
                for name, server in self.mcp_servers.items()
            },
        )
