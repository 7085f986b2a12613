"""`agent-server toolformer finetune`: LoRA (or full) fine-tuning on the generated texts, on a CPU.

The augmented texts are plain language-model data, calls inline, loss on every token
(Toolformer, section 2, "Model finetuning"). A fixed share of the texts, chosen by a hash of
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


def split(records: Sequence[dict[str, Any]], share: float) -> tuple[list[str], list[str]]:
    """(training, validation) texts; a text is held back when its id's hash falls in `share`."""
    train: list[str] = []
    held: list[str] = []
    for number, record in enumerate(records):
        key = str(record.get("id", number)).encode()
        bucket = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") / 2**32
        (held if bucket < share else train).append(str(record["augmented"]))
    return train, held


def finetune(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    out: Path,
    config: FinetuneConfig,
    progress: Callable[[int], Progress] | None = None,
) -> State:
    """Train on `records` ({id, augmented}) into `out`, resuming from its checkpoint if any."""
    train, held = split(records, config.validation)
    if not train or not held:
        raise ValueError(
            f"{len(train)} texts to train on and {len(held)} held back: need at least one of each"
        )
    if tokenizer.pad_token is None:  # batches are padded; padding is masked out of the loss
        tokenizer.pad_token = tokenizer.eos_token
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


def _epoch_order(texts: Sequence[str], seed: int, epoch: int) -> list[str]:
    order = list(texts)
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def _loss(model: Any, tokenizer: Any, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
    eos = tokenizer.eos_token or ""
    encoded = tokenizer(
        [t + eos for t in texts],
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=max_tokens,
        add_special_tokens=False,
    )
    labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
    loss: torch.Tensor = model(**encoded, labels=labels).loss
    return loss


def _evaluate(
    model: Any, tokenizer: Any, held: Sequence[str], state: State, config: FinetuneConfig, out: Path
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
