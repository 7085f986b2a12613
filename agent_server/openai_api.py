"""OpenAI-compatible routes: `/v1/chat/completions` and `/v1/models` (being written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
