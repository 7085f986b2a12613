"""A transformers causal LM, scored and sampled the way the Toolformer pipeline needs.

    CausalLM.load(settings)     the service's model, on transformers (training needs torch's
                                gradients, which llama.cpp has not)
    opener_probs(ids)           p(the next token opens a call | ids[:j]) at every j, in one pass
    logprobs(prefix, tokens)    log p(tokens[t] | prefix, tokens[:t]) for each t
    sample(ids, n, …)           n continuations, sampled in one batch

Like `backends/transformers.py`, this module imports torch; nothing else in the pipeline does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from agent_server.settings import Settings


class CausalLM:
    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, settings: Settings) -> CausalLM:
        from agent_server.backends.transformers import TransformersBackend
        from agent_server.models import resolve

        source = resolve(settings.model, settings.cache_dir)
        backend = TransformersBackend.load(
            source, settings.cache_dir, dtype=settings.dtype, threads=settings.threads
        )
        return cls(backend.model, backend.tokenizer)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        text: str = self.tokenizer.decode(list(ids))
        return text

    @cached_property
    def openers(self) -> tuple[int, ...]:
        """Tokens that open a call: `[`, alone or after spaces."""
        vocab: dict[str, int] = self.tokenizer.get_vocab()
        found = [i for i in vocab.values() if self.decode([i]).strip() == "["]
        if not found:
            raise ValueError("the tokenizer has no token for '['")
        return tuple(sorted(found))

    def opener_probs(self, ids: Sequence[int]) -> npt.NDArray[np.float64]:
        """`probs[j]` = p(token j opens a call | ids[:j]) for j = 1 … len(ids) − 1; probs[0] = 0."""
        logits = self._logits([list(ids)])[0]  # [len, vocab]: row j predicts token j + 1
        probs = torch.softmax(logits.float(), dim=-1)[:, list(self.openers)].sum(dim=-1)
        out = np.zeros(len(ids))
        out[1:] = probs[:-1].double().numpy()
        return out

    def logprobs(self, prefix: Sequence[int], tokens: Sequence[int]) -> list[float]:
        """log p(tokens[t] | prefix, tokens[:t]) for each t; the prefix must not be empty."""
        if not prefix:
            raise ValueError("logprobs needs a prefix (a BOS or newline will do)")
        ids = [*prefix, *tokens]
        logits = self._logits([ids])[0][len(prefix) - 1 : len(ids) - 1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        chosen = logp[torch.arange(len(tokens)), torch.tensor(list(tokens))]
        return [float(v) for v in chosen]

    def sample(
        self,
        ids: Sequence[int],
        n: int,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> list[str]:
        """`n` continuations of `ids` (their text), sampled at once."""
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                torch.tensor([list(ids)]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        return [self.decode(row[len(ids) :].tolist()) for row in out]

    def _logits(self, batch: list[list[int]]) -> torch.Tensor:
        with torch.inference_mode():
            logits: torch.Tensor = self.model(torch.tensor(batch)).logits
        return logits
