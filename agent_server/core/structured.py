"""Decoding to a JSON Schema, with llguidance's token masks (a maintained structured-generation
library: it compiles a schema to a grammar and, at each step, says which tokens may come next).

Two uses, both checked while the tokens are chosen, not after:

- **a call's arguments**, for a tool whose argument is a JSON object (`Tool.parameters`: the
  client's functions, MCP tools): from just after `name(` to the `)` that closes the call, the
  text is a JSON value of the tool's schema (`for_arguments`);
- **a whole answer** (`response_format`): a JSON object of the requested schema or, when the
  client's functions are offered, a call of one of them (`for_answer`).

The JSON is written compactly (`{"city": "Paris"}`, as `json.dumps` writes it): with white space
left free, a small model can spend its whole budget on new lines inside an object.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import llguidance
import numpy as np

from agent_server.backends.base import Logits, Vocabulary
from agent_server.core.grammar import Phase

log = logging.getLogger(__name__)

# How the JSON is written: no free white space, `json.dumps`'s separators.
_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# Special tokens get this first byte, which no text holds, so a grammar can never produce them
# (llguidance's convention, as in its llama.cpp adapter).
_SPECIAL = b"\xff"


@dataclass(frozen=True)
class AnswerFormat:
    """The JSON a whole answer must be: `schema` is a JSON Schema whose root is an object."""

    schema: Mapping[str, Any]
    name: str = "response"

    def instruction(self) -> str:
        """What the question is followed by, so the model knows what the JSON is for."""
        schema = json.dumps(dict(self.schema), ensure_ascii=False, separators=(",", ":"))
        if dict(self.schema) == {"type": "object"}:
            return "Answer with a JSON object only."
        return f"Answer with a JSON object only, following this JSON Schema: {schema}"


JSON_OBJECT = AnswerFormat({"type": "object"}, "json_object")


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why llguidance cannot decode to `schema` (an unsupported keyword or format), or None."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(_laid_out(schema))
    except ValueError as exc:
        return str(exc)
    error = llguidance.LLMatcher.validate_grammar(grammar)
    return error or None


def answer_problem(schema: Mapping[str, Any]) -> str | None:
    """`schema_problem`, and a root that is not an object (as OpenAI's structured outputs)."""
    if schema.get("type") != "object":
        return 'the root of the schema must be {"type": "object", …}'
    return schema_problem(schema)


class Constraint:
    """One grammar being followed: `mask` the logits before a token is chosen, `advance` with
    the chosen token. `done` once the grammar is complete (only end-of-text may follow)."""

    def __init__(self, matcher: llguidance.LLMatcher) -> None:
        self._matcher = matcher

    @property
    def done(self) -> bool:
        return self._matcher.is_stopped()

    @property
    def broken(self) -> str | None:
        """Why the matcher gave up (a grammar it could not build, a token it refused), or None."""
        return self._matcher.get_error() or None

    def mask(self, logits: Logits) -> Logits:
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little")[: logits.size].astype(bool)
        if allowed.size < logits.size:  # logits past the tokenizer's table: never grammatical
            allowed = np.concatenate([allowed, np.zeros(logits.size - allowed.size, bool)])
        if not allowed.any():
            return logits  # a broken matcher: `broken` says why; the text goes on unconstrained
        masked = np.full_like(logits, -np.inf)
        masked[allowed] = logits[allowed]
        if not np.isfinite(masked).any():
            # The model gives every grammatical token zero probability: the grammar still wins
            # (the first of them, greedy). Real models never do; a scripted one does.
            masked[allowed] = 0.0
        return masked

    def advance(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            log.warning("structured decoding stopped: %s", self._matcher.get_error())

    def start_with(self, token_ids: Sequence[int]) -> None:
        """Take text the answer already holds (its tokens); `broken` says if it was refused."""
        self._matcher.consume_tokens(list(token_ids))


class Grammars:
    """The constraints of one model: its token table (built once, about a second for 150k
    tokens) and a matcher per grammar."""

    def __init__(self, vocab: Vocabulary, encode: Callable[[str], list[int]]) -> None:
        self._vocab = vocab
        self._encode = encode
        self._table: llguidance.LLTokenizer | None = None
        self._lock = threading.Lock()

    def _tokenizer(self) -> llguidance.LLTokenizer:
        with self._lock:  # answers on several model threads may ask at once
            if self._table is None:
                self._table = _token_table(self._vocab, self._encode)
            return self._table

    def for_arguments(self, schema: Mapping[str, Any], written: str) -> Constraint | None:
        """The rest of a call's arguments (after `written`), up to and with its `)`; None when
        the schema cannot be compiled (the call is then decoded freely, and a line logged)."""
        lark = f"start: args {_literal(')')}\nargs: %json {_schema_text(schema)}"
        return self._start(lark, written)

    def for_answer(
        self, answer: AnswerFormat, functions: Mapping[str, Mapping[str, Any]], written: str = ""
    ) -> Constraint | None:
        """A whole answer: the JSON of `answer`, or a call `[name(arguments)` of a function."""
        rules = [f"answer: %json {_schema_text(answer.schema)}"]
        names = ["answer"]
        for i, (name, schema) in enumerate(sorted(functions.items())):
            opener = _literal(f"[{name}(")
            rules.append(f"call{i}: {opener} args{i} {_literal(')')}")
            rules.append(f"args{i}: %json {_schema_text(schema)}")
            names.append(f"call{i}")
        lark = "start: " + " | ".join(names) + "\n" + "\n".join(rules)
        return self._start(lark, written)

    def _start(self, lark: str, written: str) -> Constraint | None:
        tokenizer = self._tokenizer()
        matcher = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_lark(lark))
        constraint = Constraint(matcher)
        if constraint.broken is None and written:
            constraint.start_with(self._encode(written))
        if constraint.broken is not None:
            log.warning("structured decoding off for this call: %s", constraint.broken)
            return None
        return constraint


def _token_table(vocab: Vocabulary, encode: Callable[[str], list[int]]) -> llguidance.LLTokenizer:
    tokens = [
        _SPECIAL + vocab.token_bytes(i) if vocab.is_special(i) else vocab.token_bytes(i)
        for i in range(vocab.size())
    ]
    eos = sorted(vocab.eos_ids)
    wrapper = llguidance.TokenizerWrapper(_Tokens(tokens, eos[0], encode))
    return llguidance.LLTokenizer(wrapper, n_vocab=len(tokens), eos_token=eos)


@dataclass
class _Tokens:
    """What `llguidance.TokenizerWrapper` reads from a tokenizer."""

    tokens: list[bytes]
    eos_token_id: int
    encode: Callable[[str], list[int]]
    bos_token_id: int | None = None

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self.encode(text)


def _laid_out(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {**schema, "x-guidance": _LAYOUT}


def _schema_text(schema: Mapping[str, Any]) -> str:
    return json.dumps(_laid_out(schema), ensure_ascii=False)


def _literal(text: str) -> str:
    """`text` as a Lark string literal."""
    return json.dumps(text)


class AnswerGrammar:
    """Which constraint applies at each step of one answer: the whole answer's, or that of the
    call whose arguments are being written (a tool in `arguments`, by name), or none."""

    def __init__(
        self,
        grammars: Grammars,
        arguments: Mapping[str, Mapping[str, Any]],
        answer: AnswerFormat | None = None,
        functions: Mapping[str, Mapping[str, Any]] | None = None,
        prefill: str = "",
    ) -> None:
        self._grammars = grammars
        self._arguments = arguments
        self._answer, self._functions, self._prefill = answer, functions or {}, prefill
        self._whole: Constraint | None = None
        self._whole_built = False
        self._call: Constraint | None = None
        self._in_call = False  # a call's arguments are being written (constrained or not)

    def current(self, phase: Phase, name: str, args: str) -> Constraint | None:
        """The constraint for the next token, given where the call scanner is. Built on first
        use, on the model's thread: the first builds the token table."""
        if self._answer is not None:
            if not self._whole_built:
                self._whole_built = True
                self._whole = self._grammars.for_answer(
                    self._answer, self._functions, self._prefill
                )
            return self._whole
        if phase is not Phase.ARGS or name not in self._arguments:
            self._call, self._in_call = None, False
            return None
        if not self._in_call:  # the first step inside this call's parentheses
            self._in_call = True
            self._call = self._grammars.for_arguments(self._arguments[name], args)
        return self._call
