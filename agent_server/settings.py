"""All settings in one validated place: environment variables `AGENT_…`, or a `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_server.models import DEFAULT_MODEL
from tools.registry import TOOL_NAMES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENT_", env_file=".env", extra="ignore")

    # An embedded model's name, a .gguf file, a model folder, or a hub id already cached locally.
    model: str = DEFAULT_MODEL
    # bf16 decodes faster than fp32 on this class of CPU (benchmarks/engine.py).
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    threads: int = Field(default=0, ge=0, description="torch threads; 0 leaves torch's default")
    # Converted model folders and assembled GGUFs; safe to delete, rebuilt on next start.
    cache_dir: Path = Path.home() / ".cache" / "agent-server"
    prompt_style: Literal["auto", "chat", "plain"] = "auto"

    tools: list[str] = Field(default_factory=lambda: list(TOOL_NAMES))
    max_calls: int = Field(default=3, ge=0, le=20)
    call_timeout_s: float = Field(default=10.0, gt=0, le=300)
    call_top_k: int = Field(default=5, ge=0, le=100)
    max_new_tokens: int = Field(default=256, ge=1, le=4096)
    calculator_timeout_s: float = Field(default=5.0, gt=0, le=60)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
