"""Each stage of `toolformer generate` on a tiny model built here (random weights, no download).

The tokenizer is a byte-level BPE trained on the test's own texts; the model a two-layer Qwen2.
Its numbers mean nothing, so every stage is checked against the same quantity computed by hand
from the model's logits, and the whole run against what the filter must keep or drop.
"""

from __future__ import annotations

import asyncio
import json
import math

import pytest
import torch
from tiny_model import TEXT, tiny_model

from agent_server.backends.transformers import TransformersBackend
from agent_server.core.prompts import Prompt
from agent_server.toolformer.filtering import weighted_loss, weights
from agent_server.toolformer.generate import (
    GenerateConfig,
    KeptCall,
    Place,
    _one_per_place,
    annotate,
    augment,
    run,
    stated,
)
from agent_server.toolformer.lm import LM
from tools.calculator import Calculator


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def lm(model) -> LM:
    # The pipeline reads the model through a backend's sessions, as the service does.
    return LM(TransformersBackend(*model, name="tiny"))


def logits_of(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model[0](torch.tensor([ids])).logits[0].float()


def test_positions_are_the_probability_of_an_opening_bracket(lm, model):
    shared, context, tokens = lm.encode("Input: "), lm.encode("text "), lm.encode(TEXT)
    reading = lm.read(shared, context)
    probs = lm.opener_probs(reading, tokens)
    assert lm.openers.size and all(lm.decode([o]).strip() == "[" for o in lm.openers)
    ids = [*shared, *context, *tokens]
    by_hand = torch.softmax(logits_of(model, ids), dim=-1)[:, list(lm.openers)].sum(dim=-1)
    start = len(shared) + len(context) - 1  # the row that predicts tokens[0]
    assert probs == pytest.approx(by_hand[start : start + len(tokens)].numpy(), abs=1e-5)
    # A reading is forked for each use: used again, it gives the same.
    assert lm.opener_probs(reading, tokens) == pytest.approx(probs, abs=1e-6)
    # The shared start is read once and forked: a second text gives the same as a fresh read.
    assert lm.opener_probs(lm.read(shared, context), tokens) == pytest.approx(probs, abs=1e-6)
    # With nothing after the shared start, the first probability is read after it.
    alone = lm.opener_probs(lm.read([*shared, *context], []), tokens)
    assert alone == pytest.approx(probs, abs=1e-5)
    with pytest.raises(ValueError, match="nothing to read"):
        lm.read([], [])


def test_logprobs_are_the_models_own_after_any_extension(lm, model):
    shared, context, tokens = lm.encode("Input: "), lm.encode("The"), lm.encode(TEXT)[:6]
    reading = lm.read(shared, context)
    got = lm.logprobs(reading, tokens)
    prefix = [*shared, *context]
    logp = torch.log_softmax(logits_of(model, [*prefix, *tokens]), dim=-1)
    by_hand = [float(logp[len(prefix) - 1 + t, tok]) for t, tok in enumerate(tokens)]
    assert got == pytest.approx(by_hand, abs=1e-5)
    # Extended by the first two tokens, the reading predicts the rest as the model does.
    extended = lm.extend(reading, tokens[:2])
    assert lm.logprobs(extended, tokens[2:]) == pytest.approx(by_hand[2:], abs=1e-5)
    assert lm.logprobs(reading, tokens) == pytest.approx(by_hand, abs=1e-6)  # unchanged


def test_sampling_gives_n_continuations_reproducibly_and_stops_when_done(lm):
    reading = lm.read(lm.encode("Input: "), lm.encode("The farm had [Calculator("))
    first = lm.sample(reading, 3, 5, seed=7)
    assert len(first) == 3 and all(isinstance(s, str) for s in first)
    assert lm.sample(reading, 3, 5, seed=7) == first
    assert lm.sample(reading, 3, 5, seed=8) != first  # 15 random tokens: never equal
    # Done at once: each sample stops after its first token, as with a limit of one.
    stopped = lm.sample(reading, 3, 5, seed=7, done=lambda _: True)
    assert stopped == lm.sample(reading, 3, 1, seed=7)
    assert stopped != first


def test_augment_splices_calls_where_they_were_made():
    call = KeptCall("Calculator", "120+45", "165", token=0, offset=TEXT.index(" 165"), gain=1.0)
    assert augment(TEXT, [call]) == (
        "The farm had 120 sheep and bought 45 more, so it had [Calculator(120+45) → 165] 165 sheep."
    )
    assert augment(TEXT, []) == TEXT
    end = KeptCall("Calculator", "8*11", "88", token=0, offset=len("It had 88"), gain=1.0)
    assert augment("It had 88.", [end]) == "It had 88 [Calculator(8*11) → 88]."


def test_one_call_per_place_the_best():
    space = KeptCall("Calculator", "120+45", "165", token=14, offset=TEXT.index(" 165"), gain=0.2)
    digit = KeptCall("Calculator", "165-45", "120", token=15, offset=TEXT.index("165"), gain=0.5)
    later = KeptCall("Calculator", "165/1", "165", token=17, offset=TEXT.index(" sheep."), gain=0.1)
    assert _one_per_place(TEXT, [later, space, digit]) == (digit, later)


class ScriptedCalls(LM):
    """The tiny model, except that the calls it samples are scripted: random weights would
    never write a well-formed one. Positions and losses stay the model's own."""

    def __init__(self, base: LM, samples: list[str]) -> None:
        super().__init__(base.backend)
        self.samples = samples
        self.asked: list[str] = []
        self.read_ids: dict[int, list[int]] = {}  # what each reading has read

    def sample(self, reading, n, max_new_tokens, **options):  # noqa: ARG002 - same signature
        self.asked.append(self.decode(self.read_ids[id(reading)]))
        return self.samples[:n]

    def read(self, shared, context):
        reading = super().read(shared, context)
        self.read_ids[id(reading)] = [*shared, *context]
        return reading

    def extend(self, reading, tokens):
        extended = super().extend(reading, tokens)
        self.read_ids[id(extended)] = [*self.read_ids[id(reading)], *tokens]
        return extended


def test_the_whole_run_keeps_filtered_calls_with_real_results(lm, model):
    samples = ["120+45) → 165] 165", "120+45)] again", "12 cups)", "no close", "165)]"]
    scripted = ScriptedCalls(lm, samples)
    calculator = Calculator()
    try:
        everything = GenerateConfig(top_k=2, tau_s=0.0, tau_f=-math.inf, m=5)
        kept = asyncio.run(annotate(scripted, "d1", TEXT, {"Calculator": calculator}, everything))
        nothing = GenerateConfig(top_k=2, tau_s=0.0, tau_f=math.inf, m=5)
        dropped = asyncio.run(annotate(scripted, "d1", TEXT, {"Calculator": calculator}, nothing))
        unreachable = GenerateConfig(top_k=2, tau_s=1.0, tau_f=-math.inf, m=5)
        untried = asyncio.run(
            annotate(scripted, "d1", TEXT, {"Calculator": calculator}, unreachable)
        )
    finally:
        calculator.close()

    assert kept is not None and dropped is None and untried is None
    # The top_k positions by the model's own p([), one call per place in the text.
    x = lm.encode(TEXT)
    header = lm.encode(Prompt("plain").instructions([Calculator()]) + "\n\n")
    by_hand = torch.softmax(logits_of(model, [*header, *x]), dim=-1)[:, list(lm.openers)]
    probs = by_hand.sum(dim=-1)[len(header) - 1 : -1].numpy()
    top = sorted(int(i) for i in probs.argsort()[::-1][:2])
    # A Calculator call is kept only where the text goes on to state its result, 165, in the
    # window the filter scores: the positions just before "165" (and the space before it).
    states = [i for i in top if TEXT[len(lm.decode(x[:i])) :].lstrip().startswith("165")]
    assert states, "the tiny model's top positions should include one before 165"
    assert len(kept.calls) == 1 and kept.calls[0].token == states[0]
    for call in kept.calls:
        # The duplicate ran once; "12 cups" failed in the Calculator; "165" restates itself.
        assert (call.tool, call.args, call.result) == ("Calculator", "120+45", "165")
        losses = call.losses
        assert call.gain == pytest.approx(
            min(losses["no_call"], losses["call_only"]) - losses["with_result"]
        )
    assert kept.augmented.count("[Calculator(120+45) → 165]") == 1
    # Each loss is the weighted loss of the five tokens after the place, by the model reading
    # the prompt and the text, without the call and with it spliced in as `augment` writes it.
    call, i = kept.calls[0], kept.calls[0].token
    window = len(weights())
    gap = "" if TEXT[: call.offset].endswith(" ") else " "
    after = lm.encode(" " + TEXT[call.offset :].lstrip(" "))[:window]
    for loss, before, following in (
        ("no_call", x[:i], x[i : i + window]),
        ("with_result", [*x[:i], *lm.encode(gap + "[Calculator(120+45) → 165]")], after),
        ("call_only", [*x[:i], *lm.encode(gap + "[Calculator(120+45)]")], after),
    ):
        logp = torch.log_softmax(logits_of(model, [*header, *before, *following]), dim=-1)
        start = len(header) + len(before) - 1
        by_hand = weighted_loss([float(logp[start + t, tok]) for t, tok in enumerate(following)])
        assert call.losses[loss] == pytest.approx(by_hand, abs=1e-4), loss
    # Candidates were sampled after the prompt and the text up to the position.
    assert all(a.rstrip().endswith("[Calculator(") for a in scripted.asked)
    assert all(a.startswith("You answer questions") for a in scripted.asked)
    assert json.loads(json.dumps(kept.record()))["calls"][0]["result"] == "165"


def test_run_writes_one_record_per_annotated_text(lm, tmp_path):
    scripted = ScriptedCalls(lm, ["120+45) → 165] 165"])
    # The third text has no place where a result of 165 is stated next: nothing is kept.
    records = [
        {"id": "a", "text": TEXT},
        {"doc_id": "b", "text": TEXT},
        {"id": "c", "text": "It had 120 sheep."},
    ]
    calculator = Calculator()
    out = tmp_path / "out" / "generated.jsonl"
    try:
        config = GenerateConfig(top_k=2, tau_s=0.0, tau_f=-math.inf, m=1)
        summary = asyncio.run(run(scripted, records, {"Calculator": calculator}, config, out))
    finally:
        calculator.close()
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == ["a", "b"]
    assert (summary.texts, summary.annotated, summary.calls) == (3, 2, {"Calculator": 2})
    assert all("[Calculator(120+45) → 165]" in r["augmented"] for r in written)


@pytest.mark.parametrize(
    ("text", "result", "within", "expected"),
    [
        ("It has 9 + 43 = 52 skeins.", "52", 6, True),  # the next number is the result
        ("It is 400 / 1400 = 0.29 of it.", "0.2857", 6, True),  # rounded as written
        ("It is 400 / 1400 = 0.28 of it.", "0.2857", 6, False),  # rounded is 0.29, not 0.28
        ("It has 6.67 / 12 = 8 episodes.", "0.5556", 6, False),  # the text ignores the result
        ("It was left with 36.\nHe found 36 more.", "36", 6, False),  # stated, but far after
        ("So 9 x 12 = 108 eggs.", "108*x", 6, False),  # not a number
        ("It earns 195*12 = £2340/month.", "2340", 6, True),  # currency and unit around it
    ],
)
def test_a_calculator_result_must_be_stated_right_after_the_call(text, result, within, expected):
    offset = text.index("=") + 2 if "=" in text else text.index(".") + 1
    assert stated(result, Place(text, [], 0, offset), within) is expected
