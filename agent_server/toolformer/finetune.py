"""`agent-server toolformer finetune`: LoRA (or full) fine-tuning on the generated texts, on a CPU.

The augmented texts are language-model data, calls inline (Toolformer, section 2, "Model
finetuning"). A worked problem, `Question: … Answer: …`, is trained as the service will show it
to the model: `frame(question)` is the prompt the service writes for that question (its
instructions and examples, in the model's chat template, ending in "Answer:"), and the loss is
on the answer and the end of the turn alone. Trained on the bare text instead, the model learnt
an answer style its prompt never asks for (README, "Toolformer training"). Any other text is
trained whole, loss on every token. A fixed share of the texts, chosen by a hash of
each id (so it never moves between runs), is held back to measure the loss; training stops
after `patience` measurements without a better one, and the best weights are what it writes:

    out/checkpoint/   the last step's weights, optimizer and progress: a rerun resumes here
    out/best/         the best weights so far (a LoRA adapter, or the whole model)
    out/model/        the best, merged into the base model with its tokenizer: a model folder
                      the service loads with AGENT_MODEL=out/model (on transformers)

Data order is a function of the seed and the epoch, and an interrupted run resumes at the step
it reached, so the result does not depend on interruptions. Left out: mixed precision (bf16
gradients lose the small LoRA updates; fp32 is used), gradient checkpointing, and exporting to
GGUF for the llama.cpp backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from agent_server.evals.runner import Progress
from agent_server.toolformer.config import FinetuneConfig


@dataclass(frozen=True)
class Example:
    """One training text: `prompt` is read, `completion` is learnt (the loss is on it alone)."""

    prompt: str
    completion: str


Frame = Callable[[str], str]  # a question → the prompt the service writes for it


def framed(text: str, frame: Frame | None) -> Example:
    """`text` as the model will meet it: a worked problem, `Question: q\nAnswer: a`, becomes
    the service's prompt for q and the answer a; anything else (or no frame) stays whole."""
    question, cue, answer = text.partition("\nAnswer:")
    if frame is None or not cue or not question.startswith("Question:"):
        return Example("", text)
    return Example(frame(question.removeprefix("Question:").strip()), answer)


@dataclass
class State:
    """Progress, saved with each checkpoint."""

    step: int = 0
    best_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    stopped_early: bool = False
    finished: bool = False
    history: list[tuple[int, float]] | None = None  # (step, validation loss)


def split(
    records: Sequence[dict[str, Any]], share: float, frame: Frame | None = None
) -> tuple[list[Example], list[Example]]:
    """(training, validation) examples; a text is held back when its id's hash is in `share`."""
    train: list[Example] = []
    held: list[Example] = []
    for number, record in enumerate(records):
        key = str(record.get("id", number)).encode()
        bucket = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") / 2**32
        (held if bucket < share else train).append(framed(str(record["augmented"]), frame))
    return train, held


def finetune(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    out: Path,
    config: FinetuneConfig,
    progress: Callable[[int], Progress] | None = None,
    frame: Frame | None = None,
) -> State:
    """Train on `records` ({id, augmented}) into `out`, resuming from its checkpoint if any."""
    train, held = split(records, config.validation, frame)
    if not train or not held:
        raise ValueError(
            f"{len(train)} texts to train on and {len(held)} held back: need at least one of each"
        )
    for example in (*train, *held):
        _tokens(tokenizer, example, config.max_tokens)  # a text that cannot fit fails now
    model = _trainable(model, config)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
    )
    state = _resume(model, optimizer, out / "checkpoint") or State(history=[])
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    bar = progress(total) if progress else None
    if bar:
        bar.done = state.step  # resumed: the steps already taken count as done
    while not (state.finished or state.stopped_early) and state.step < total:
        if config.max_steps and state.step >= config.max_steps:
            return state  # as if interrupted: the checkpoint has everything to go on
        epoch, index = divmod(state.step, steps_per_epoch)
        batch = _epoch_order(train, config.seed, epoch)[
            index * config.batch_size : (index + 1) * config.batch_size
        ]
        model.train()
        loss = _loss(model, tokenizer, batch, config.max_tokens)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad()
        state.step += 1
        if bar:
            bar.advance()
        if state.step % config.eval_every == 0 or state.step % steps_per_epoch == 0:
            _evaluate(model, tokenizer, held, state, config, out)
        _save(model, optimizer, state, out / "checkpoint")
    state.finished = True
    _save(model, optimizer, state, out / "checkpoint")
    return state


def export(base: Any, tokenizer: Any, out: Path, config: FinetuneConfig) -> Path:
    """The best weights merged into `base` and saved with the tokenizer: `out/model`."""
    model = base
    if config.lora_rank > 0:
        from peft import PeftModel

        with _peft_on_transformers_5():
            model = PeftModel.from_pretrained(base, out / "best").merge_and_unload()
    else:
        model.load_state_dict(torch.load(out / "best" / "weights.pt", weights_only=True))
    target = out / "model"
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def _trainable(model: Any, config: FinetuneConfig) -> Any:
    torch.manual_seed(config.seed)
    model = model.float()
    if config.lora_rank <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    with _peft_on_transformers_5():
        return get_peft_model(model, lora)


@contextlib.contextmanager
def _peft_on_transformers_5() -> Iterator[None]:
    # peft 0.21 still reads `is_gradient_checkpointing`, which transformers 5 deprecates (a
    # FutureWarning, an error under the tests' filterwarnings); nothing of ours to change.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def _epoch_order(examples: Sequence[Example], seed: int, epoch: int) -> list[Example]:
    order = list(examples)
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def _loss(model: Any, tokenizer: Any, examples: Sequence[Example], max_tokens: int) -> torch.Tensor:
    """The mean loss on the completions' tokens (and the end of text after each)."""
    rows = [_tokens(tokenizer, e, max_tokens) for e in examples]
    width = max(len(ids) for ids, _ in rows)
    # Padding is masked out of attention and loss; it is the end-of-text token because that one
    # is surely in the model's vocabulary (a declared padding token may not be: Qwen2's is not
    # in every checkpoint's embeddings).
    ids = torch.full((len(rows), width), tokenizer.eos_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (tokens, read) in enumerate(rows):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, read : len(tokens)] = torch.tensor(tokens[read:])
        mask[row, : len(tokens)] = 1
    loss: torch.Tensor = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    return loss


def _tokens(tokenizer: Any, example: Example, max_tokens: int) -> tuple[list[int], int]:
    """The example's tokens, cut to `max_tokens`, and how many of them are the prompt.

    Prompt and completion are encoded apart, as the engine encodes its prompt and then adds
    the tokens the model writes."""

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    prompt = encode(example.prompt)
    if len(prompt) >= max_tokens:
        raise ValueError(
            f"a prompt of {len(prompt)} tokens leaves nothing to learn in max_tokens {max_tokens}"
        )
    completion = encode(example.completion + (tokenizer.eos_token or ""))
    return (prompt + completion)[:max_tokens], len(prompt)


def _evaluate(
    model: Any,
    tokenizer: Any,
    held: Sequence[Example],
    state: State,
    config: FinetuneConfig,
    out: Path,
) -> None:
    model.eval()
    with torch.inference_mode():
        losses = [
            float(_loss(model, tokenizer, held[i : i + config.batch_size], config.max_tokens))
            for i in range(0, len(held), config.batch_size)
        ]
    loss = sum(losses) / len(losses)
    assert state.history is not None
    state.history.append((state.step, loss))
    if loss < state.best_loss:
        state.best_loss, state.best_step, state.bad_evals = loss, state.step, 0
        _save_weights(model, out / "best", config)
    else:
        state.bad_evals += 1
        state.stopped_early = state.bad_evals >= config.patience


def _save_weights(model: Any, folder: Path, config: FinetuneConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if config.lora_rank > 0:
        model.save_pretrained(folder)  # the adapter alone
    else:
        torch.save(model.state_dict(), folder / "weights.pt")


def _save(model: Any, optimizer: torch.optim.Optimizer, state: State, folder: Path) -> None:
    # Written aside and swapped in: an interruption mid-save leaves the previous checkpoint.
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    torch.save(trainable, partial / "trainable.pt")
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    (partial / "state.json").write_text(json.dumps(asdict(state)))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _resume(model: Any, optimizer: torch.optim.Optimizer, folder: Path) -> State | None:
    if not (folder / "state.json").is_file():
        return None
    trainable = torch.load(folder / "trainable.pt", weights_only=True)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in trainable:
                parameter.copy_(trainable[name])
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    saved = json.loads((folder / "state.json").read_text())
    saved["history"] = [tuple(h) for h in saved.get("history") or []]
    return State(**saved)
