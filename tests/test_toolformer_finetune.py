"""`toolformer finetune` on a tiny model built here (no download): LoRA and full fine-tuning,
the held-back split, early stopping, resuming after an interruption, and the exported folder."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_model import tiny_model

from agent_server.backends.transformers import TransformersBackend
from agent_server.models import resolve
from agent_server.toolformer.config import FinetuneConfig
from agent_server.toolformer.finetune import export, finetune, split

RECORDS = [
    {"id": f"t{n}", "augmented": f"It had {n} sheep and [Calculator({n}+{n}) → {2 * n}] {2 * n}."}
    for n in range(1, 25)
]


def test_the_held_back_texts_are_chosen_by_id_and_never_move(tmp_path):
    train, held = split(RECORDS, 0.25)
    assert len(train) + len(held) == len(RECORDS) and held and train
    assert not set(train) & set(held)
    assert split(list(reversed(RECORDS)), 0.25)[1] == list(reversed(held))  # order-free
    with pytest.raises(ValueError, match="held back"):
        finetune(*tiny_model(), RECORDS, tmp_path, FinetuneConfig(validation=0.0))


def adapter_weights(out):
    return torch.load(out / "checkpoint" / "trainable.pt", weights_only=True)


def test_lora_training_lowers_the_held_back_loss_and_exports_a_loadable_model(tmp_path):
    model, tokenizer = tiny_model()
    config = FinetuneConfig(
        epochs=4, learning_rate=5e-3, batch_size=4, eval_every=5, patience=10, validation=0.25
    )
    state = finetune(model, tokenizer, RECORDS, tmp_path, config)
    assert state.finished and not state.stopped_early
    losses = [loss for _, loss in state.history]
    assert losses[-1] < losses[0] and state.best_loss == min(losses)
    assert (tmp_path / "best" / "adapter_config.json").is_file()

    base, _ = tiny_model()
    folder = export(base, tokenizer, tmp_path, config)
    backend = TransformersBackend.load(resolve(str(folder), tmp_path), tmp_path, dtype="float32")
    text = "It had 3 sheep and [Calculator("
    session = backend.new_session()
    logits = session.feed(backend.encode(text))
    assert logits.shape[0] == len(tokenizer) and math.isfinite(float(logits.max()))


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    config = FinetuneConfig(
        epochs=2, learning_rate=5e-3, lora_dropout=0.0, eval_every=3, validation=0.25
    )
    straight = finetune(*tiny_model(), RECORDS, tmp_path / "straight", config)

    stopped = FinetuneConfig(**{**config.__dict__, "max_steps": 4})
    halfway = finetune(*tiny_model(), RECORDS, tmp_path / "resumed", stopped)
    assert halfway.step == 4 and not halfway.finished
    resumed = finetune(*tiny_model(), RECORDS, tmp_path / "resumed", config)
    assert resumed.step == straight.step and resumed.finished
    assert [s for s, _ in resumed.history] == [s for s, _ in straight.history]
    assert [v for _, v in resumed.history] == pytest.approx([v for _, v in straight.history])
    a, b = adapter_weights(tmp_path / "straight"), adapter_weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_training_stops_early_when_the_held_back_loss_stops_improving(tmp_path):
    # Full fine-tuning at a learning rate that blows up: the held-back loss soon gets worse.
    config = FinetuneConfig(
        epochs=20,
        learning_rate=5.0,
        lora_rank=0,
        eval_every=1,
        patience=2,
        batch_size=8,
        validation=0.25,
    )
    state = finetune(*tiny_model(), RECORDS, tmp_path, config)
    assert state.stopped_early and state.step < 20 * 3
    best_step, best_loss = min(state.history, key=lambda h: h[1])
    assert (state.best_step, state.best_loss) == (best_step, best_loss)
    # It stopped at the second evaluation in a row without a better loss.
    assert state.bad_evals == 2
    assert all(step > best_step and loss > best_loss for step, loss in state.history[-2:])
    assert (tmp_path / "best" / "weights.pt").is_file()
