"""Request and response bodies of the HTTP API (pydantic at the edge).

Long (over 300 lines) because it holds every body of the native routes, each a small model with its
field descriptions for /docs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_server.answering import AnswerRequest
from agent_server.core.decoding import Sampling
from agent_server.core.events import CallEvent, FinalEvent, ResultEvent, StopReason
from agent_server.core.strategies import MAX_SAMPLES, StrategyChoice
from agent_server.storage.document_sync import LocalDocument
from agent_server.storage.store import Conversation, ConversationInfo, Turn
from agent_server.webgpt.citations import Quote, references
from tools.retrieval import Hit, IndexState

STRATEGY_HELP = (
    "how to reason (toolformer mode): auto (consensus for a question with numbers, else "
    "toolformer), toolformer (sentences, tools inline), calculator (steps with Calculator "
    "calls), program (a Python program), tir (reasoning with programs), cot (the model alone), "
    "consensus (tir and program, and cot if they disagree: the majority); default: the service's"
)
SAMPLES_HELP = (
    "answers to sample and vote on (self-consistency); default: the service's for its default "
    "strategy, else 1. With more than one, temperature 0 means the service's sample temperature"
)


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=8_000)
    mode: Literal["toolformer", "webgpt"] = Field(
        "toolformer",
        description="toolformer: inline tool calls; webgpt: browse, quote, answer with references",
    )
    conversation_id: str | None = Field(
        None, description="continue this conversation (its earlier turns are the context)"
    )
    stream: bool = Field(
        False, description="Server-Sent Events: token, answer, call, result, final"
    )
    tools: list[str] | None = Field(None, description="tools to allow; default: all registered")
    max_calls: int | None = Field(None, ge=0, le=20)
    strategy: StrategyChoice | None = Field(None, description=STRATEGY_HELP)
    samples: int | None = Field(None, ge=1, le=MAX_SAMPLES, description=SAMPLES_HELP)
    max_new_tokens: int | None = Field(None, ge=1, le=4_096)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: list[str] = Field(default_factory=list, max_length=8, description="stop strings")

    def answer_request(self, max_new_tokens: int | None) -> AnswerRequest:
        """The request to answer (`max_new_tokens`: the service's budget, unless one is asked)."""
        sampling = Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=tuple(s for s in self.stop if s),
            max_new_tokens=self.max_new_tokens or max_new_tokens,
        )
        return AnswerRequest(
            self.question,
            mode=self.mode,
            strategy=self.strategy,
            samples=self.samples,
            tools=self.tools,
            max_calls=self.max_calls,
            sampling=sampling,
        )


class TraceItem(BaseModel):
    tool: str
    argument: str
    result: str | None
    error: str | None
    duration_s: float

    @classmethod
    def from_event(cls, event: ResultEvent) -> TraceItem:
        return cls(
            tool=event.tool,
            argument=event.argument,
            result=event.result,
            error=event.error,
            duration_s=round(event.duration_s, 4),
        )


class CallItem(BaseModel):
    index: int
    tool: str
    argument: str
    sample: int | None = Field(
        None, description="which of several samples made the call", exclude_if=lambda v: v is None
    )

    @classmethod
    def from_event(cls, event: CallEvent) -> CallItem:
        return cls(index=event.index, tool=event.tool, argument=event.argument, sample=event.sample)


class QuoteItem(BaseModel):
    number: int = Field(description="what the answer's [n] markers cite")
    title: str
    url: str
    text: str = Field(description="verbatim from the page")

    @classmethod
    def from_quote(cls, quote: Quote) -> QuoteItem:
        return cls(number=quote.number, title=quote.title, url=quote.url, text=quote.text)


class ReferenceItem(BaseModel):
    numbers: list[int] = Field(description="the quotes taken from this page")
    title: str
    url: str
    domain: str

    @classmethod
    def list_of(cls, quotes: Sequence[Quote]) -> list[ReferenceItem]:
        return [
            cls(numbers=list(r.numbers), title=r.title, url=r.url, domain=r.domain)
            for r in references(quotes)
        ]


class CheckItem(BaseModel):
    kind: str = Field(
        description="stated_answer_differs: the answer states another number than its program "
        "printed; value_from_error: the answer's number is only in a tool's error message"
    )
    stated: str | None
    computed: str | None


class VoteItem(BaseModel):
    value: str | None
    samples: list[int] = Field(description="the samples that gave it; the first vote won")
    strategies: list[str] = Field(description="each of those samples' strategy")
    mean_logprob: float | None = Field(description="None for an ensemble of strategies")


class AskResponse(BaseModel):
    answer: str
    text: str
    model: str
    trace: list[TraceItem]
    # WebGPT mode's quotes and the pages they came from; empty in toolformer mode.
    quotes: list[QuoteItem] = Field(default_factory=list)
    references: list[ReferenceItem] = Field(default_factory=list)
    usage: dict[str, int]
    timings: dict[str, float]
    stop_reason: StopReason
    conversation_id: str | None = None
    strategy: str = Field("toolformer", description="how the answer reasoned; webgpt in WebGPT")
    value: str | None = Field(None, description="the answer's number as written, if it has one")
    checks: list[CheckItem] = Field(default_factory=list)
    votes: list[VoteItem] = Field(default_factory=list, description="with several samples")
    sample: int | None = Field(
        None,
        description="with several samples: the one that is the answer (its text and trace)",
        exclude_if=lambda v: v is None,
    )

    @classmethod
    def from_final(
        cls, final: FinalEvent, model: str, conversation_id: str | None = None
    ) -> AskResponse:
        return cls(
            answer=final.answer,
            text=final.text,
            model=model,
            trace=[TraceItem.from_event(r) for r in final.trace],
            quotes=[QuoteItem.from_quote(q) for q in final.quotes],
            references=ReferenceItem.list_of(final.quotes),
            usage=vars(final.usage),
            timings={k: round(v, 4) for k, v in vars(final.timings).items()},
            stop_reason=final.stop_reason,
            conversation_id=conversation_id,
            strategy=final.strategy,
            value=final.value,
            checks=[
                CheckItem(kind=c.kind, stated=c.stated, computed=c.computed) for c in final.checks
            ],
            votes=[
                VoteItem(
                    value=v.value,
                    samples=list(v.samples),
                    strategies=list(v.strategies),
                    mean_logprob=v.mean_logprob,
                )
                for v in final.votes
            ],
            sample=final.sample,
        )


class ToolInfo(BaseModel):
    name: str
    description: str
    example: str
    # Told to the model when a request names no tools (Retrieve: once it has documents).
    offered: bool


DocumentStatus = Literal["indexing", "ready", "unreadable", "not indexed"]


class DocumentInfo(BaseModel):
    id: str
    bytes: int
    modified: float  # seconds since the epoch, of this replica's copy
    # Whether Retrieve can search it yet: `indexing` until its index holds it, `ready` then;
    # `unreadable` (a PDF without text, say) and `not indexed` (Retrieve is off, or its index
    # could not be built) with the reason in `problem`.
    status: DocumentStatus
    problem: str | None = None
    # While `indexing`: how far the index being built is, 0 to 1 (its passages embedded so
    # far); None until embedding starts. A large PDF takes minutes on a small machine.
    progress: float | None = None

    @classmethod
    def from_local(cls, doc: LocalDocument, index: IndexState | None) -> DocumentInfo:
        status, problem = _status(doc.name, index)
        return cls(
            id=doc.name,
            bytes=doc.bytes,
            modified=doc.modified,
            status=status,
            problem=problem,
            progress=_progress(index) if status == "indexing" else None,
        )


def _progress(index: IndexState | None) -> float | None:
    if index is None or index.progress is None:
        return None
    done, total = index.progress
    return round(done / total, 3) if total else None


def _status(name: str, index: IndexState | None) -> tuple[DocumentStatus, str | None]:
    if index is None:
        return "not indexed", "Retrieve is not enabled (AGENT_TOOLS leaves it out)"
    if name in index.documents:
        return "ready", None
    if name in index.skipped:
        return "unreadable", index.skipped[name]
    if index.error is not None:
        return "not indexed", index.error
    return "indexing", None  # being indexed, or the folder changed and the next index will


class DocumentHit(BaseModel):
    document: str  # the document's id within the corpus
    title: str
    text: str  # the passage, verbatim
    score: float  # the fused score Retrieve ranks by: comparable within one search only

    @classmethod
    def from_hit(cls, hit: Hit) -> DocumentHit:
        p = hit.passage
        return cls(document=p.doc_id, title=p.title, text=p.text, score=hit.score)


class ErrorBody(BaseModel):
    error: str


class ConversationSummary(BaseModel):
    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    turns: int

    @classmethod
    def from_info(cls, info: ConversationInfo) -> ConversationSummary:
        return cls(
            id=info.id,
            title=info.title,
            created_at=info.created_at,
            updated_at=info.updated_at,
            turns=info.turns,
        )


class TurnOut(BaseModel):
    position: int
    question: str
    answer: str
    text: str
    trace: list[dict[str, Any]]
    mode: str
    model: str
    usage: dict[str, Any]
    timings: dict[str, Any]
    quotes: list[QuoteItem]
    references: list[ReferenceItem]
    created_at: datetime

    @classmethod
    def from_turn(cls, turn: Turn) -> TurnOut:
        quotes = [Quote(**q) for q in turn.quotes]
        return cls(
            quotes=[QuoteItem.from_quote(q) for q in quotes],
            references=ReferenceItem.list_of(quotes),
            position=turn.position,
            question=turn.question,
            answer=turn.answer,
            text=turn.text,
            trace=[dict(t) for t in turn.trace],
            mode=turn.mode,
            model=turn.model,
            usage=dict(turn.usage),
            timings=dict(turn.timings),
            created_at=turn.created_at,
        )


class ConversationDetail(BaseModel):
    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    turns: list[TurnOut]

    @classmethod
    def from_conversation(cls, conversation: Conversation) -> ConversationDetail:
        info = conversation.info
        return cls(
            id=info.id,
            title=info.title,
            created_at=info.created_at,
            updated_at=info.updated_at,
            turns=[TurnOut.from_turn(t) for t in conversation.turns],
        )
