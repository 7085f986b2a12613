"""Fine-tuning's settings, apart from the training code so that the CLI need not import torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 3
    learning_rate: float = 2e-4  # LoRA's usual; full fine-tuning wants ~1e-5
    batch_size: int = 4
    # A text longer than this is cut. The service's prompt for a question takes ~330 tokens of
    # the default model's, a worked answer 100-250.
    max_tokens: int = 768
    lora_rank: int = 8  # 0: full fine-tuning, every weight
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    validation: float = 0.1  # share of texts held back, by a hash of their id
    eval_every: int = 20  # steps between validation losses (and at each epoch's end)
    patience: int = 3  # validation losses without a better one before stopping
    max_steps: int = 0  # stop (as if interrupted) after this many steps in all; 0: no limit
    seed: int = 0
