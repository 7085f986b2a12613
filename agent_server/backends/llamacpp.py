"""The llama.cpp backend: a GGUF run by llama.cpp (llama-cpp-python's C API), with batching.

llama.cpp decodes a quantized model several times faster on a CPU than torch does. This backend
keeps what the engine needs from it: logits at every step (the call rule and the name mask work
on them as with any backend), a KV cache per session that survives splices, and forks that share
a prompt's cached start.

Every session is one *sequence* of a single llama.cpp context whose KV cache is unified across
sequences, so a fork (`llama_memory_seq_cp`) shares the prefix's cells instead of copying them.
One scheduler thread owns the context: concurrent sessions hand it their tokens, and each of its
steps decodes whatever is waiting from all of them in one `llama_decode` batch — the next
token of every answer in progress, and a chunk of any prompt still being read (continuous
batching). A step costs little more for four sequences than for one on a CPU, so throughput
grows with clients instead of queueing them.

Left out: llama.cpp's own samplers and grammars. Token choice stays in `agent_server.core.decoding`,
so both backends decode by exactly the same rules.

Built on llama-cpp-python's low-level API (`llama_cpp` and its `_internals` wrappers, pinned in
pyproject.toml); the high-level `Llama` class keeps one sequence per context.

Long (over 300 lines) because the batching scheduler and the sessions it steps share llama.cpp's
context and its sequence slots.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from agent_server.backends.base import Logits
from agent_server.backends.gguf import GgufTokenizer, import_llama, load_model
from agent_server.errors import ModelBusy, ModelNotAvailable
from agent_server.models import ModelSource

T = TypeVar("T")

# How long a step may wait for the other answers of the last step (`_Scheduler._gather`): a few
# times the Python work between two steps of one answer, a tenth of a 0.5B decode step.
GATHER_S = 0.003


@dataclass(frozen=True)
class LlamaCppConfig:
    # Token cells shared by every sequence (unified KV cache): the prompts and answers in
    # progress plus the cached prompt starts. 16k cells of the 0.5B default take ~190 MiB.
    context_tokens: int = 16_384
    # Sequences that may exist at once: answers in progress, their forks and cached prefixes.
    sequences: int = 64
    # Tokens per `llama_decode`: a long prompt is read in chunks this size, between decode steps.
    batch_tokens: int = 512
    threads: int = 0  # 0: one per CPU core


class LlamaCppBackend:
    prefix_caching = True
    kind = "llamacpp"
    batching = True  # sessions may feed from several threads at once: their steps are batched

    def __init__(
        self,
        model: Any,
        context: Any,
        name: str,
        config: LlamaCppConfig,
        state_key: str | None,
        saved_pieces: Path | None = None,
    ) -> None:
        self.name = name
        self.state_key = state_key
        self._model = model  # the _internals wrappers free the context before the model
        self._context = context
        self._tokens = GgufTokenizer(model, saved_pieces)
        self.vocab = self._tokens.vocab
        self.encode = self._tokens.encode
        self.decode = self._tokens.decode
        self.chat_prompt = self._tokens.chat_prompt
        # Answers that gain from running at once: 8 at once write ~2x the tokens of one
        # (benchmarks/backends.py).
        self.parallel = 8
        self._scheduler = _Scheduler(import_llama(), context.ctx, self._tokens.size, config)

    @classmethod
    def load(
        cls,
        source: ModelSource,
        config: LlamaCppConfig | None = None,
        cache_dir: Path | None = None,
    ) -> LlamaCppBackend:
        """The GGUF of `source` in a context of its own; with `cache_dir`, the token pieces are
        kept under cache_dir/vocab between processes."""
        config = config or LlamaCppConfig()
        model = load_model(source)
        llama = import_llama()
        from llama_cpp import _internals

        threads = config.threads or os.cpu_count() or 1
        params = llama.llama_context_default_params()
        params.n_ctx = config.context_tokens
        params.n_batch = params.n_ubatch = config.batch_tokens
        params.n_seq_max = config.sequences
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = threads
        try:
            context = _internals.LlamaContext(model=model, params=params, verbose=False)
        except ValueError as exc:
            model.close()
            raise ModelNotAvailable(f"llama.cpp cannot make a context: {exc}") from exc
        # A saved sequence holds its cells in this model's layout and llama.cpp's format.
        state_key = source.cache_key and "|".join(
            (source.cache_key, f"llama-cpp-python {llama.__version__}", "kv f16", "unified")
        )
        pieces = None
        if cache_dir is not None and state_key:
            digest = hashlib.sha256(state_key.encode()).hexdigest()[:32]
            pieces = cache_dir / "vocab" / f"{digest}.json"
        return cls(model, context, source.name, config, state_key, pieces)

    def close(self) -> None:
        """Stop the scheduler and free the context and the model; later use raises."""
        self._tokens.close()
        self._scheduler.stop()
        self._context.close()
        self._model.close()

    def new_session(self) -> LlamaCppSession:
        return LlamaCppSession(self._scheduler, self._scheduler.acquire(), 0)

    def restore(self, state: bytes, length: int) -> LlamaCppSession | None:
        """A session from `LlamaCppSession.save`'s bytes, or None if llama.cpp refuses them."""
        seq = self._scheduler.acquire()
        session = LlamaCppSession(self._scheduler, seq, length)  # its finalizer frees `seq`
        loaded = self._scheduler.run(lambda: self._scheduler.load(seq, state, length))
        return session if loaded else None


class LlamaCppSession:
    """One sequence of the shared context; its cells are freed when the session is."""

    def __init__(self, scheduler: _Scheduler, seq_id: int, length: int) -> None:
        self._scheduler = scheduler
        self._seq = seq_id
        self._length = length
        weakref.finalize(self, scheduler.release, seq_id)

    @property
    def length(self) -> int:
        return self._length

    def feed(self, token_ids: Sequence[int]) -> Logits:
        logits = self._scheduler.feed(self._seq, self._length, list(token_ids))
        self._length += len(token_ids)
        return logits

    def feed_each(self, token_ids: Sequence[int]) -> Logits:
        """Like `feed`, with the logits after every token, one row each (a guess checked in one
        step: `core.lookup`)."""
        rows = self._scheduler.feed(self._seq, self._length, list(token_ids), every=True)
        self._length += len(token_ids)
        return rows

    def forget(self, count: int) -> None:
        """Drop the last `count` tokens. Not waited for: the scheduler runs it before any later
        feed of this session, which goes through the same queue."""
        if not 0 <= count <= self._length:
            raise ValueError(f"cannot forget {count} of {self._length} tokens")
        self._length -= count
        self._scheduler.forget(self._seq, self._length)

    def fork(self) -> LlamaCppSession:
        """A session that has read the same tokens, sharing this one's cells."""
        twin = self._scheduler.acquire()
        self._scheduler.run(lambda: self._scheduler.copy(self._seq, twin))
        return LlamaCppSession(self._scheduler, twin, self._length)

    def save(self) -> bytes:
        """This sequence's KV cells, as llama.cpp writes them (`llama_state_seq_get_data`)."""
        return self._scheduler.run(lambda: self._scheduler.save(self._seq))


@dataclass
class _Feed:
    seq: int
    pos: int
    tokens: list[int]
    done: Future[Logits] = field(default_factory=Future)
    read: int = 0  # tokens already decoded
    every: bool = False  # the logits after every token, else after the last only
    rows: list[Logits] = field(default_factory=list)


@dataclass
class _Op:
    fn: Callable[[], Any]
    done: Future[Any] = field(default_factory=Future)


class _Scheduler:
    """The thread that owns the llama.cpp context: it runs every decode, copy and removal."""

    def __init__(self, llama: Any, ctx: Any, n_vocab: int, config: LlamaCppConfig) -> None:
        self._llama = llama
        self._ctx = ctx
        self._memory = llama.llama_get_memory(ctx)
        self._n_vocab = n_vocab
        self._batch_tokens = config.batch_tokens
        self._batch = llama.llama_batch_init(config.batch_tokens, 0, 1)
        self._free = list(range(config.sequences - 1, -1, -1))
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Feed | _Op | None] = queue.SimpleQueue()
        self._active: list[_Feed] = []
        self._last_width = 0  # sequences the last step decoded one token of
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="llama.cpp", daemon=True)
        self._thread.start()

    # -- called from any thread ---------------------------------------------------------------
    def acquire(self) -> int:
        with self._lock:
            if not self._free:
                raise ModelBusy("all llama.cpp sequences are in use; try again shortly")
            return self._free.pop()

    def release(self, seq_id: int) -> None:
        if self._stopped:
            return

        def clear() -> None:
            self._llama.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
            with self._lock:
                self._free.append(seq_id)

        self._queue.put(_Op(clear))  # not waited for: a finalizer must not block

    def feed(self, seq_id: int, pos: int, tokens: list[int], *, every: bool = False) -> Logits:
        if not tokens:
            raise ValueError("feed needs at least one token")
        if self._stopped:
            raise ModelNotAvailable("the llama.cpp model has been closed")
        request = _Feed(seq_id, pos, tokens, every=every)
        self._queue.put(request)
        return request.done.result()

    def forget(self, seq_id: int, keep: int) -> None:
        """Remove `seq_id`'s cells from position `keep` on, before its next feed."""
        if self._stopped:
            raise ModelNotAvailable("the llama.cpp model has been closed")
        self._queue.put(
            _Op(lambda: self._llama.llama_memory_seq_rm(self._memory, seq_id, keep, -1))
        )

    def run(self, fn: Callable[[], T]) -> T:
        """`fn()` run on the scheduler thread, between two steps (`copy`, `save`, `load`)."""
        if self._stopped:
            raise ModelNotAvailable("the llama.cpp model has been closed")
        op = _Op(fn)
        self._queue.put(op)
        result: T = op.done.result()
        return result

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._llama.llama_batch_free(self._batch)

    # -- the scheduler thread (through `run`) --------------------------------------------------
    def copy(self, src: int, dst: int) -> None:
        self._llama.llama_memory_seq_cp(self._memory, src, dst, -1, -1)

    def save(self, seq: int) -> bytes:
        size = self._llama.llama_state_seq_get_size(self._ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = self._llama.llama_state_seq_get_data(self._ctx, buffer, size, seq)
        return bytes(buffer)[:written]

    def load(self, seq: int, state: bytes, length: int) -> bool:
        """Whether `state` loaded into `seq` as `length` tokens (else `seq` is left empty)."""
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        read = self._llama.llama_state_seq_set_data(self._ctx, buffer, len(state), seq)
        if read and self._llama.llama_memory_seq_pos_max(self._memory, seq) == length - 1:
            return True
        self._llama.llama_memory_seq_rm(self._memory, seq, -1, -1)
        return False

    def _run(self) -> None:
        while True:
            items = [self._queue.get()] if not self._active else []
            while True:  # whatever else is waiting joins this step
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._gather(items)
            for item in items:
                if item is None:
                    self._fail(self._active, ModelBusy("the model is shutting down"))
                    return
                if isinstance(item, _Op):
                    self._run_op(item)
                else:
                    self._active.append(item)
            if self._active:
                try:
                    self._step()
                except Exception as exc:  # the answers in progress fail instead of waiting forever
                    self._fail(
                        list(self._active), ModelNotAvailable(f"llama.cpp step failed: {exc}")
                    )

    def _gather(self, items: list[_Feed | _Op | None]) -> None:
        """Wait a moment for the next tokens of the sequences the last step decoded.

        Each answer chooses its next token on its own thread after a step, so they hand it in a
        millisecond or so apart; a step that started on the first would decode it alone and
        leave the rest for the next, halving what a batch holds. One answer alone never waits.
        """
        feeds = len(self._active) + sum(isinstance(i, _Feed) for i in items)
        deadline = time.monotonic() + GATHER_S
        while feeds < self._last_width and None not in items:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            items.append(item)
            feeds += isinstance(item, _Feed)

    def _run_op(self, op: _Op) -> None:
        try:
            result = op.fn()
        except Exception as exc:  # pragma: no cover - the C calls return codes, not raise
            op.done.set_exception(exc)
        else:
            op.done.set_result(result)

    def _step(self) -> None:
        """One llama_decode over every active sequence: next tokens first, then prompt chunks."""
        batch, room = self._batch, self._batch_tokens
        planned: list[tuple[_Feed, int, int]] = []  # (request, first token, count)
        n = 0
        for request in sorted(self._active, key=lambda r: len(r.tokens) - r.read):
            take = min(len(request.tokens) - request.read, room - n)
            if take <= 0:
                break
            for i in range(take):
                batch.token[n + i] = request.tokens[request.read + i]
                batch.pos[n + i] = request.pos + request.read + i
                batch.n_seq_id[n + i] = 1
                batch.seq_id[n + i][0] = request.seq
                batch.logits[n + i] = request.every
            finishes = request.read + take == len(request.tokens)
            batch.logits[n + take - 1] = finishes or request.every
            planned.append((request, n, take))
            n += take
        batch.n_tokens = n
        # Sequences stepping one token at a time: the width the next step waits for (_gather).
        self._last_width = sum(take == 1 for _, _, take in planned)
        code = self._llama.llama_decode(self._ctx, batch)
        if code != 0:
            for request, _, _ in planned:  # nothing of a failed batch stays in the cache
                start = request.pos + request.read
                self._llama.llama_memory_seq_rm(self._memory, request.seq, start, -1)
            full = "the model's context is full" if code == 1 else f"llama_decode failed ({code})"
            self._fail([r for r, _, _ in planned], ModelBusy(f"{full}; try again shortly"))
            return
        for request, first, take in planned:
            request.read += take
            if request.every:
                request.rows.extend(self._logits(first + i) for i in range(take))
            if request.read == len(request.tokens):
                self._active.remove(request)
                if request.every:
                    request.done.set_result(np.stack(request.rows))
                else:
                    request.done.set_result(self._logits(first + take - 1))

    def _logits(self, index: int) -> Logits:
        """A copy of the logits after the batch's token `index` (llama.cpp reuses its buffer)."""
        pointer = self._llama.llama_get_logits_ith(self._ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()

    def _fail(self, requests: list[_Feed], error: Exception) -> None:
        for request in requests:
            self._active.remove(request)
            request.done.set_exception(error)
