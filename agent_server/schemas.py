"""Request and response bodies of the HTTP API (pydantic at the edge)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent_server.events import FinalEvent


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=8_000)
    tools: list[str] | None = Field(None, description="tools to allow; default: all registered")
    max_calls: int | None = Field(None, ge=0, le=20)
    max_new_tokens: int | None = Field(None, ge=1, le=4_096)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=8, description="stop strings")


class TraceItem(BaseModel):
    tool: str
    argument: str
    result: str | None
    error: str | None
    duration_s: float


class AskResponse(BaseModel):
    answer: str
    text: str
    model: str
    trace: list[TraceItem]
    usage: dict[str, int]
    timings: dict[str, float]
    stop_reason: str

    @classmethod
    def from_final(cls, final: FinalEvent, model: str) -> AskResponse:
        return cls(
            answer=final.answer,
            text=final.text,
            model=model,
            trace=[
                TraceItem(
                    tool=r.tool,
                    argument=r.argument,
                    result=r.result,
                    error=r.error,
                    duration_s=round(r.duration_s, 4),
                )
                for r in final.trace
            ],
            usage=vars(final.usage),
            timings={k: round(v, 4) for k, v in vars(final.timings).items()},
            stop_reason=final.stop_reason,
        )


class ErrorBody(BaseModel):
    error: str
