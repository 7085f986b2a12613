"""Tests for token choice (call rule, name constraint, sampling), detokenizing, the vocabulary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_server.backends.base import Logits, Vocabulary
from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.decoding import Detokenizer, Sampling, TokenChooser
from agent_server.core.grammar import Phase

TOOLS = ("Calculator", "Search")


@pytest.fixture
def backend() -> ScriptedBackend:
    backend = ScriptedBackend()
    backend.encode("[abcuxé台")  # make sure every character used below has a token
    return backend


def tid(backend: ScriptedBackend, char: str) -> int:
    (token,) = backend.encode(char)
    return token


def logits_for(backend: ScriptedBackend, scores: dict[str, float], rest: float = 0.0) -> Logits:
    logits = np.full(backend.vocab.size(), rest, dtype=np.float32)
    for char, score in scores.items():
        logits[tid(backend, char)] = score
    return logits


def chooser(
    vocab: Vocabulary,
    *,
    tools: tuple[str, ...] = TOOLS,
    k: int = 3,
    sampling: Sampling | None = None,
) -> TokenChooser:
    return TokenChooser(vocab, sampling or Sampling(), tools, k)


def make_vocab(pieces: list[str]) -> Vocabulary:
    return Vocabulary(size=lambda: len(pieces), piece=pieces.__getitem__, eos_ids=frozenset({0}))


# -- greedy and the top-k call rule ---------------------------------------------------------------
def test_greedy_picks_argmax(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"a": 1.0, "b": 3.0, "c": 2.0})
    assert chooser(backend.vocab).choose(logits, Phase.TEXT, "", 1) == tid(backend, "b")
    assert chooser(backend.vocab).choose(logits, Phase.ARGS, "", 1) == tid(backend, "b")


def test_choose_does_not_modify_the_callers_logits(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"a": 1.0, "[": 5.0})
    before = logits.copy()
    chooser(backend.vocab).choose(logits, Phase.TEXT, "", 0)
    np.testing.assert_array_equal(logits, before)


def test_call_opener_in_top_k_is_chosen(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"a": 5.0, "[": 4.0})
    assert chooser(backend.vocab, k=3).choose(logits, Phase.TEXT, "", 1) == tid(backend, "[")


def test_call_opener_outside_top_k_is_not_chosen(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"a": 5.0, "b": 4.8, "c": 4.6, "[": 4.0})
    assert chooser(backend.vocab, k=3).choose(logits, Phase.TEXT, "", 1) == tid(backend, "a")
    assert chooser(backend.vocab, k=4).choose(logits, Phase.TEXT, "", 1) == tid(backend, "[")


def test_call_rule_overrides_sampling(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"a": 5.0, "[": 4.0})
    sampled = chooser(backend.vocab, sampling=Sampling(temperature=1.0, seed=0))
    picks = {sampled.choose(logits, Phase.TEXT, "", 1) for _ in range(20)}
    assert picks == {tid(backend, "[")}


def test_no_calls_left_disables_the_rule_and_masks_openers(backend: ScriptedBackend) -> None:
    second = logits_for(backend, {"a": 5.0, "[": 4.0})
    assert chooser(backend.vocab).choose(second, Phase.TEXT, "", 0) == tid(backend, "a")
    first = logits_for(backend, {"a": 5.0, "[": 10.0})
    assert chooser(backend.vocab).choose(first, Phase.TEXT, "", 0) == tid(backend, "a")


def test_right_after_a_result_openers_are_masked(backend: ScriptedBackend) -> None:
    second = logits_for(backend, {"a": 5.0, "[": 4.0})
    choose = chooser(backend.vocab).choose
    assert choose(second, Phase.TEXT, "", 3, after_result=True) == tid(backend, "a")
    first = logits_for(backend, {"a": 5.0, "[": 10.0})
    assert choose(first, Phase.TEXT, "", 3, after_result=True) == tid(backend, "a")
    # One token later the rule is back.
    assert choose(second, Phase.TEXT, "", 3, after_result=False) == tid(backend, "[")


def test_after_the_first_call_only_a_first_choice_opens_a_call(backend: ScriptedBackend) -> None:
    choose = chooser(backend.vocab, k=3).choose
    second = logits_for(backend, {"a": 5.0, "[": 4.0})
    assert choose(second, Phase.TEXT, "", 3, calls_made=0) == tid(backend, "[")
    assert choose(second, Phase.TEXT, "", 3, calls_made=1) == tid(backend, "a")
    first = logits_for(backend, {"a": 5.0, "[": 6.0})
    assert choose(first, Phase.TEXT, "", 3, calls_made=2) == tid(backend, "[")


def test_right_after_a_result_the_answer_cannot_end(backend: ScriptedBackend) -> None:
    eos = next(iter(backend.vocab.eos_ids))
    logits = logits_for(backend, {"a": 1.0})
    logits[eos] = 9.0
    choose = chooser(backend.vocab).choose
    assert choose(logits, Phase.TEXT, "", 3, after_result=True) == tid(backend, "a")
    assert choose(logits, Phase.TEXT, "", 3, after_result=False) == eos


def test_k_zero_disables_the_rule(backend: ScriptedBackend) -> None:
    second = logits_for(backend, {"a": 5.0, "[": 4.0})
    assert chooser(backend.vocab, k=0).choose(second, Phase.TEXT, "", 1) == tid(backend, "a")
    # `[` may still win on its own.
    first = logits_for(backend, {"a": 5.0, "[": 6.0})
    assert chooser(backend.vocab, k=0).choose(first, Phase.TEXT, "", 1) == tid(backend, "[")


def test_no_tools_no_rule(backend: ScriptedBackend) -> None:
    second = logits_for(backend, {"a": 5.0, "[": 4.0})
    assert chooser(backend.vocab, tools=(), k=10).choose(second, Phase.TEXT, "", 5) == tid(
        backend, "a"
    )


def test_rule_applies_only_in_text(backend: ScriptedBackend) -> None:
    second = logits_for(backend, {"a": 5.0, "[": 4.0})
    for phase in (Phase.ARGS, Phase.RESULT, Phase.AFTER_ARGS):
        assert chooser(backend.vocab).choose(second, phase, "Calc", 1) == tid(backend, "a")


def test_minus_infinity_openers_are_never_forced(backend: ScriptedBackend) -> None:
    # As the scripted model gives them: one finite logit, everything else -inf.
    logits = logits_for(backend, {"a": 0.0}, rest=-np.inf)
    assert chooser(backend.vocab, k=50).choose(logits, Phase.TEXT, "", 1) == tid(backend, "a")


def test_highest_opener_in_top_k_wins() -> None:
    vocab = make_vocab(["", "x", "[", " [", "y"])
    logits = np.array([0.0, 9.0, 7.0, 8.0, 1.0], dtype=np.float32)
    assert chooser(vocab, k=3).choose(logits, Phase.TEXT, "", 1) == 3
    logits[2] = 8.5
    assert chooser(vocab, k=3).choose(logits, Phase.TEXT, "", 1) == 2


# -- the name constraint --------------------------------------------------------------------------
def test_name_constraint_allows_only_a_continuation(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"x": 10.0, "S": 9.0, "(": 8.0, "u": 1.0})
    assert chooser(backend.vocab).choose(logits, Phase.NAME, "Calc", 1) == tid(backend, "u")


def test_name_constraint_holds_under_sampling(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"x": 10.0, "u": 1.0})
    sampled = chooser(backend.vocab, sampling=Sampling(temperature=2.0, seed=3))
    assert {sampled.choose(logits, Phase.NAME, "Calc", 1) for _ in range(50)} == {tid(backend, "u")}


def test_name_constraint_at_start_and_end_of_a_name(backend: ScriptedBackend) -> None:
    choose = chooser(backend.vocab).choose
    start = logits_for(backend, {"x": 10.0, "C": 1.0, "S": 2.0})
    assert choose(start, Phase.NAME, "", 1) == tid(backend, "S")
    end = logits_for(backend, {"x": 10.0, "s": 9.0, "(": 1.0})
    assert choose(end, Phase.NAME, "Calculator", 1) == tid(backend, "(")


def test_name_constraint_with_multi_character_pieces() -> None:
    pieces = ["", "Calc", "ulator", "ulator(", "(", "Calculator(2", "x", "Search("]
    logits = np.array([0.0, 9.0, 2.0, 3.0, 8.0, 7.0, 10.0, 6.0], dtype=np.float32)
    choose = chooser(make_vocab(pieces)).choose
    assert choose(logits, Phase.NAME, "Calc", 1) == 3  # "ulator(" beats "ulator"
    assert choose(logits, Phase.NAME, "", 1) == 1  # "Calc" beats "Calculator(2" and "Search("


def test_no_name_constraint_when_no_calls_are_left() -> None:
    vocab = make_vocab(["", "x", "=[", "Calc", "1"])
    logits = np.array([0.0, 1.0, 1.0, 2.0, 9.0], dtype=np.float32)
    # The text so far is "x=[" (scanner in Phase.NAME); the model wants "1" for `x=[1]`.
    assert chooser(vocab).choose(logits, Phase.NAME, "", 0) == 4


# -- sampling -------------------------------------------------------------------------------------
def _two_token_logits(size: int, p: float) -> Logits:
    logits = np.full(size, -np.inf, dtype=np.float32)
    logits[1], logits[2] = np.log(p), np.log(1 - p)
    return logits


def test_same_seed_same_choices(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"a": 1.0, "b": 0.5, "c": 0.8}, rest=-np.inf)

    def run(seed: int) -> list[int]:
        sampled = chooser(backend.vocab, sampling=Sampling(temperature=1.0, seed=seed))
        return [sampled.choose(logits, Phase.ARGS, "", 1) for _ in range(60)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert set(run(7)) == {tid(backend, c) for c in "abc"}


def test_greedy_ignores_seed_and_top_p(backend: ScriptedBackend) -> None:
    logits = logits_for(backend, {"a": 1.0, "b": 1.1})
    for seed in (1, 2, 3):
        greedy = chooser(backend.vocab, sampling=Sampling(temperature=0.0, top_p=0.5, seed=seed))
        assert greedy.choose(logits, Phase.ARGS, "", 1) == tid(backend, "b")


def test_small_top_p_keeps_only_the_top_token() -> None:
    logits = np.log(np.array([0.1, 0.4, 0.3, 0.2], dtype=np.float32))
    sampled = chooser(make_vocab(["", "a", "b", "c"]), sampling=Sampling(1.0, top_p=0.05, seed=0))
    assert {sampled.choose(logits, Phase.ARGS, "", 1) for _ in range(200)} == {1}


def test_top_p_keeps_the_nucleus() -> None:
    logits = np.log(np.array([0.1, 0.4, 0.3, 0.2], dtype=np.float32))
    sampled = chooser(make_vocab(["", "a", "b", "c"]), sampling=Sampling(1.0, top_p=0.6, seed=0))
    assert {sampled.choose(logits, Phase.ARGS, "", 1) for _ in range(300)} == {1, 2}


def test_sampling_follows_the_distribution() -> None:
    logits = _two_token_logits(5, 0.7)
    sampled = chooser(make_vocab(["", "a", "b", "c", "d"]), sampling=Sampling(1.0, seed=1234))
    counts = Counter(sampled.choose(logits, Phase.ARGS, "", 1) for _ in range(2000))
    assert set(counts) == {1, 2}
    assert 0.6 < counts[1] / 2000 < 0.8


def test_low_temperature_sharpens() -> None:
    logits = _two_token_logits(3, 0.7)
    sampled = chooser(make_vocab(["", "a", "b"]), sampling=Sampling(0.1, seed=5))
    counts = Counter(sampled.choose(logits, Phase.ARGS, "", 1) for _ in range(500))
    assert counts[1] / 500 > 0.98


# -- the detokenizer ------------------------------------------------------------------------------
def decode_bytes(ids: Sequence[int]) -> str:
    """Token ids are single UTF-8 bytes."""
    return bytes(ids).decode("utf-8", errors="replace")


def test_detokenizer_holds_back_half_characters() -> None:
    detok = Detokenizer(decode_bytes)
    deltas = [detok.add(b) for b in "台湾".encode()]
    assert deltas == ["", "", "台", "", "", "湾"]


def test_detokenizer_mixed_text() -> None:
    text = "a台b é!"
    detok = Detokenizer(decode_bytes)
    deltas = [detok.add(b) for b in text.encode()]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert deltas[0] == "a"


def test_detokenizer_with_context_yields_only_new_text() -> None:
    detok = Detokenizer(decode_bytes, context=list("x → 台".encode()))
    deltas = [detok.add(b) for b in "湾]".encode()]
    assert deltas == ["", "", "湾", "]"]


def test_detokenizer_with_multi_byte_tokens() -> None:
    pieces = [b"\xe5", b"\x8f\xb0\xe6", b"\xb9\xbe", b"!"]  # "台湾!" split across characters

    def decode(ids: Sequence[int]) -> str:
        return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")

    detok = Detokenizer(decode)
    deltas = [detok.add(i) for i in range(4)]
    assert "".join(deltas) == "台湾!"
    assert all("\ufffd" not in d for d in deltas)
    assert deltas[0] == "" and deltas[-1] == "!"


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_characters="\ufffd"), max_size=40))
def test_detokenizer_deltas_concatenate_to_the_text(text: str) -> None:
    detok = Detokenizer(decode_bytes)
    assert "".join(detok.add(b) for b in text.encode()) == text


# -- the vocabulary -------------------------------------------------------------------------------
PIECES = ["", "[", " [", "Calc", "ulator", "ulator(", "(", "Calculator(2", "x", "[C"]


def test_call_openers() -> None:
    assert make_vocab(PIECES).call_openers().tolist() == [1, 2]


@pytest.mark.parametrize(
    ("name_so_far", "expected"),
    [
        ("", [3, 7]),
        ("Calc", [4, 5]),
        ("Calculator", [6]),
        ("Zzz", []),
    ],
)
def test_allowed_after(name_so_far: str, expected: list[int]) -> None:
    assert make_vocab(PIECES).allowed_after(name_so_far, TOOLS).tolist() == expected


def test_allowed_after_depends_on_names() -> None:
    vocab = make_vocab(PIECES)
    assert vocab.allowed_after("", ("Search",)).tolist() == []
    assert vocab.allowed_after("Calc", ("Calc",)).tolist() == [6]


def test_vocabulary_sees_tokens_added_later() -> None:
    pieces = ["", "x"]
    vocab = make_vocab(pieces)
    assert vocab.call_openers().tolist() == []
    assert vocab.allowed_after("", ("Calc",)).tolist() == []
    pieces += ["[", "Ca"]
    assert vocab.call_openers().tolist() == [2]
    assert vocab.allowed_after("", ("Calc",)).tolist() == [3]


def test_scripted_vocab_grows_with_encode() -> None:
    backend = ScriptedBackend()
    size = backend.vocab.size()
    assert backend.vocab.allowed_after("", ("台湾",)).tolist() == []
    (token,) = backend.encode("台")
    assert backend.vocab.size() == size + 1
    assert backend.vocab.allowed_after("", ("台湾",)).tolist() == [token]


def test_openers_after_any_white_space() -> None:
    assert make_vocab(["", "[", "\n[", "\t[", " ["]).call_openers().tolist() == [1, 2, 3, 4]


def test_a_vanishing_temperature_is_greedy_not_a_numeric_error() -> None:
    logits = np.array([0.0, 2.0, -np.inf, 1.0], dtype=np.float32)
    vocab = make_vocab(["a", "b", "c", "d"])
    tiny = TokenChooser(vocab, Sampling(temperature=1e-300, seed=1), (), 0)
    assert tiny.choose(logits, Phase.TEXT, "", 0) == 1


def test_threads_reading_the_vocabulary_at_once_list_each_token_once() -> None:
    # llama.cpp's batching reads one model from several threads; the lazily listed pieces
    # were once extended by several of them at once, listing tokens twice, past the logits' end.
    pieces = [f"w{i}" for i in range(2_000)] + ["["]

    def slow_piece(i: int) -> str:
        if i == 0:
            time.sleep(0.3)  # the other readers arrive while the first is listing
        return pieces[i]

    vocab = Vocabulary(size=lambda: len(pieces), piece=slow_piece, eos_ids=frozenset())
    with ThreadPoolExecutor(3) as pool:
        openers = list(pool.map(lambda _: vocab.call_openers(), range(3)))
    assert vocab.pieces() == pieces
    assert all(o.tolist() == [len(pieces) - 1] for o in openers)


def test_saved_pieces_spare_the_next_process_the_listing_and_damage_is_ignored(tmp_path):
    pieces = ["<eos>", "a", " [", "\ufffd", '"quoted"', "é"]
    asked: list[int] = []

    def piece(i: int) -> str:
        asked.append(i)
        return pieces[i]

    def vocab() -> Vocabulary:
        return Vocabulary(
            size=lambda: len(pieces), piece=piece, eos_ids=frozenset({0}), saved=saved
        )

    saved = tmp_path / "vocab" / "model.json"
    assert vocab().pieces() == pieces and len(asked) == len(pieces)
    asked.clear()
    again = vocab()  # a new process, the file on disk
    assert again.pieces() == pieces and asked == []
    assert again.call_openers().tolist() == [2]
    for damage in ("not json", "[1, 2, 3, 4, 5, 6]", '["too", "few"]'):
        saved.write_text(damage)
        asked.clear()
        assert vocab().pieces() == pieces and len(asked) == len(pieces)  # listed afresh
    assert vocab().pieces() == pieces  # ... and saved again
