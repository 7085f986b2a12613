"""`toolformer finetune` on a tiny model built here (no download): LoRA and full fine-tuning,
worked problems framed as the service prompts them, the held-back split, early stopping,
resuming after an interruption, the exported folder, and the command itself."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_run import cli
from tiny_model import tiny_model
from transformers import AutoTokenizer

from agent_server.backends.transformers import TransformersBackend
from agent_server.models import resolve
from agent_server.toolformer.config import FinetuneConfig
from agent_server.toolformer.finetune import Example, _loss, export, finetune, framed, split

RECORDS = [
    {"id": f"t{n}", "augmented": f"It had {n} sheep and [Calculator({n}+{n}) → {2 * n}] {2 * n}."}
    for n in range(1, 25)
]


def test_the_held_back_texts_are_chosen_by_id_and_never_move(tmp_path):
    train, held = split(RECORDS, 0.25)
    assert len(train) + len(held) == len(RECORDS) and held and train
    assert not set(train) & set(held)
    assert {e.completion for e in train + held} == {r["augmented"] for r in RECORDS}
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


def frame(question: str) -> str:
    return f"Instructions.\nQuestion: {question}\nAnswer:"


def test_a_worked_problem_is_framed_as_the_service_prompts_it():
    text = "Question: It had 3 sheep and 3 more. How many?\nAnswer: It has [Calculator(3+3) → 6] 6."
    example = framed(text, frame)
    assert example == Example(
        "Instructions.\nQuestion: It had 3 sheep and 3 more. How many?\nAnswer:",
        " It has [Calculator(3+3) → 6] 6.",
    )
    assert framed(text, None) == Example("", text)  # no frame: the text is trained whole
    assert framed("It had 3 sheep.", frame) == Example("", "It had 3 sheep.")  # not a problem


def test_the_loss_is_on_the_answer_alone():
    model, tokenizer = tiny_model()
    example = Example("It had 120 sheep and bought 45 more", ", so it had 165 sheep.")
    prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    answer = tokenizer(example.completion + "<eos>", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + answer])).logits[0]
        logp = torch.log_softmax(logits.float(), dim=-1)
        by_hand = -sum(
            float(logp[len(prompt) - 1 + t, token]) for t, token in enumerate(answer)
        ) / len(answer)
        # Batched with a longer example, padded: the padding counts for nothing either.
        longer = Example("It had", " 120 sheep and bought 45 more, so it had 165 sheep.")
        alone = float(_loss(model, tokenizer, [example], 200))
        both = float(_loss(model, tokenizer, [example, longer], 200))
        other = float(_loss(model, tokenizer, [longer], 200))
    assert alone == pytest.approx(by_hand, abs=1e-4)
    longer_tokens = len(tokenizer(longer.completion + "<eos>")["input_ids"])
    mean = (alone * len(answer) + other * longer_tokens) / (len(answer) + longer_tokens)
    assert both == pytest.approx(mean, abs=1e-4)
    with pytest.raises(ValueError, match="leaves nothing to learn"):
        _loss(model, tokenizer, [example], len(prompt))


def test_the_command_trains_the_model_a_folder_names_and_writes_one_the_service_loads(tmp_path):
    model, tokenizer = tiny_model()
    base = tmp_path / "base"
    tokenizer.save_pretrained(base)
    model.save_pretrained(base)
    # transformers reads the folder's tokenizer back as Qwen2's, with a padding token (id 400)
    # the model has no embedding for: padding must not use it.
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert tokenizer.pad_token_id >= model.config.vocab_size
    data = tmp_path / "generated.jsonl"
    problems = [
        {
            "id": f"p{n}",
            "augmented": f"Question: It had {n} sheep and {n} more. How many?\n"
            f"Answer: It has {n} + {n} = [Calculator({n}+{n}) → {2 * n}] {2 * n} sheep.",
        }
        for n in range(1, 13)
    ]
    data.write_text("".join(json.dumps(p) + "\n" for p in problems))
    out = tmp_path / "tuned"
    args = ["toolformer", "finetune", "--data", str(data), "--out", str(out), "--epochs", "1"]
    done = cli(*args, "--validation", "0.3", AGENT_MODEL=str(base), AGENT_BACKEND="transformers")
    assert done.returncode == 0, done.stderr
    assert f"AGENT_MODEL={out / 'model'}" in done.stdout
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["finished"] and state["step"] >= 1
    loaded = TransformersBackend.load(resolve(str(out / "model"), tmp_path), tmp_path, "float32")
    assert loaded.encode("It had 3 sheep") == tokenizer("It had 3 sheep")["input_ids"]
    # A prompt the token budget cannot hold is refused with the setting to change, not a trace.
    args[args.index(str(out))] = str(tmp_path / "short")
    short = cli(*args, "--max-tokens", "8", AGENT_MODEL=str(base), AGENT_BACKEND="transformers")
    assert short.returncode != 0 and "max_tokens 8" in short.stderr
    assert "Traceback" not in short.stderr
