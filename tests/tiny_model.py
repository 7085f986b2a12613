"""A tiny causal LM built in the test run: a byte-level BPE trained on a few texts and a two-layer
Qwen2 with random weights. No download; its numbers mean nothing, so tests compare what the code
computes with the same quantity computed by hand from the model."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from agent_server.core.prompts import Prompt
from tools.calculator import Calculator

TEXT = "The farm had 120 sheep and bought 45 more, so it had 165 sheep."


def tiny_model() -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast]:
    prompt = Prompt("plain").instructions([Calculator()])
    corpus = [TEXT, prompt, "[Calculator(1+2) → 3] 0123456789"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<eos>"],
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>")
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
    )
    return Qwen2ForCausalLM(config).eval(), tokenizer
