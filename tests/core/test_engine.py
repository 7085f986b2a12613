"""The engine on the scripted backend: splicing, the KV-cache contract, every error path."""

from __future__ import annotations

import asyncio

import pytest
from doubles import BrokenTool, EchoTool, PrintingPython, RefusingTool, SlowTool

from agent_server.core.decoding import Sampling
from agent_server.core.engine import EngineConfig
from agent_server.core.events import AnswerEvent, CallEvent, FinalEvent, ResultEvent, TokenEvent
from agent_server.errors import BadRequest
from tools.calculator import Calculator


def run(engine, question="q", **kwargs):
    return asyncio.run(engine.run(question, **kwargs))


def collect(engine, question="q", **kwargs):
    async def go():
        return [e async for e in engine.stream(question, **kwargs)]

    return asyncio.run(go())


def test_call_is_run_and_spliced_and_the_model_continues(make_engine):
    calculator = Calculator()
    try:
        engine, _ = make_engine(["It is [Calculator(2+3*4)", " 14."], tools=[calculator])
        final = run(engine)
    finally:
        calculator.close()
    assert final.text == "It is [Calculator(2+3*4) → 14] 14."
    assert final.answer == "It is 14."
    assert [(r.tool, r.argument, r.result, r.error) for r in final.trace] == [
        ("Calculator", "2+3*4", "14", None)
    ]


def test_quoted_argument_reaches_the_tool_unquoted(make_engine):
    engine, _ = make_engine(['[Echo("a ] (b")', " ok"])
    final = run(engine)
    assert final.trace[0].argument == "a ] (b"
    assert final.trace[0].result == "b( ] a"
    assert final.answer == "ok"


def test_prefix_is_never_encoded_twice(make_engine):
    engine, backend = make_engine(['x [Echo("ab")', ' y [Echo("cd")', " z"])
    final = run(engine)
    feeds = backend.sessions[0].feeds
    prompt, rest = feeds[0], feeds[1:]
    assert backend.decode(prompt) == backend.prompts[0]
    # After the prompt, each feed is one chosen token, or a token plus a spliced result.
    spliced = [backend.decode(f) for f in rest if len(f) > 1]
    assert spliced == [") → ba]", ") → dc]"]
    usage = final.usage
    total = usage.prompt_tokens + usage.completion_tokens + usage.spliced_tokens
    assert sum(len(f) for f in feeds) == total
    assert final.usage.spliced_tokens == len(" → ba]") + len(" → dc]")


def test_events_stream_in_order(make_engine):
    engine, _ = make_engine(['Hi [Echo("ab")', " done"])
    events = collect(engine)
    kinds = [type(e).__name__ for e in events]
    first_call = kinds.index("CallEvent")
    assert kinds[first_call + 1] == "ResultEvent"
    assert isinstance(events[-1], FinalEvent)
    streamed = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert streamed == 'Hi [Echo("ab") done'  # the spliced result travels as a ResultEvent
    call = events[first_call]
    assert isinstance(call, CallEvent) and call.argument == "ab"
    result = events[first_call + 1]
    assert isinstance(result, ResultEvent) and result.result == "ba"


def test_unknown_tool_gets_an_error_the_model_can_read(make_engine):
    engine, backend = make_engine(['[Weather("Paris")', " Sorry."])
    final = run(engine)
    assert final.trace[0].error.startswith("unknown tool 'Weather'; tools: Echo")
    assert "→ Error: unknown tool 'Weather'" in final.text
    assert final.answer == "Sorry."
    assert backend.sessions[0].feeds[-1]  # generation went on after the error


def test_refusing_tool_error_is_spliced(make_engine):
    engine, _ = make_engine(["[Refuse(x)", " fine"], tools=[RefusingTool()])
    final = run(engine)
    assert final.trace[0].error == "cannot handle 'x'"
    assert "[Refuse(x) → Error: cannot handle 'x']" in final.text


def test_broken_tool_does_not_end_the_answer(make_engine):
    engine, _ = make_engine(["[Broken(x)", " still here"], tools=[BrokenTool()])
    final = run(engine)
    assert final.trace[0].error == "Broken failed internally (RuntimeError)"
    assert final.answer == "still here"


def test_slow_tool_times_out(make_engine):
    engine, _ = make_engine(["[Slow(5)", " moving on"], tools=[SlowTool()], call_timeout_s=0.2)
    final = run(engine)
    assert final.trace[0].error == "Slow timed out after 0.2 s"
    assert final.trace[0].duration_s < 2
    assert final.answer == "moving on"


def test_max_calls_is_enforced(make_engine):
    engine, _ = make_engine(['[Echo("a")', ' [Echo("b")', " end"], max_calls=1)
    final = run(engine)
    assert [r.result for r in final.trace] == ["a", None]
    assert final.trace[1].error == "call limit reached (1); answer without tools"


def test_max_calls_zero_per_request(make_engine):
    engine, _ = make_engine(['[Echo("a")', " end"])
    final = run(engine, max_calls=0)
    assert final.trace[0].error.startswith("call limit reached (0)")


def test_malformed_call_is_reported_not_dropped(make_engine):
    engine, _ = make_engine(["x [Echo(1+"])
    final = run(engine)
    assert final.trace[-1].error == "malformed call: unterminated call"
    assert final.answer == "x"


def test_stop_string_ends_the_answer_and_is_never_streamed(make_engine):
    engine, _ = make_engine(["Paris.\nQuestion: and Rome?"])
    events = collect(engine)
    final = events[-1]
    assert final.answer == "Paris."
    assert final.stop_reason == "stop"
    streamed = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert streamed == "Paris."


def test_max_new_tokens_gives_length_stop(make_engine):
    engine, _ = make_engine(["abcdefghij"])
    final = run(engine, sampling=Sampling(max_new_tokens=4))
    assert final.text == "abcd"
    assert final.stop_reason == "length"


def test_unknown_requested_tool_is_a_bad_request(make_engine):
    engine, _ = make_engine(["x"])
    with pytest.raises(BadRequest, match="unknown tools \\['Nope'\\]"):
        run(engine, tools=["Nope"])


def test_tools_can_be_narrowed_per_request(make_engine):
    engine, backend = make_engine(['[Echo("a")', " end"], tools=[EchoTool(), RefusingTool()])
    final = run(engine, tools=["Refuse"])
    assert final.trace[0].error.startswith("unknown tool 'Echo'; tools: Refuse")
    assert "Refuse" in backend.prompts[0] and "Echoes its input" not in backend.prompts[0]


def test_prompt_lists_the_tools_and_the_question(make_engine):
    engine, backend = make_engine(["ok"])
    run(engine, question="What   is\n2+2?")
    prompt = backend.prompts[0]
    assert '- Echo: Echoes its input backwards. Example: [Echo("abc")]' in prompt
    assert prompt.endswith("<user>Question: What is 2+2?</user>\n<assistant>Answer:")


def test_concurrent_answers_keep_their_own_sessions(make_engine):
    engine, _ = make_engine(['one [Echo("12")', " a"], ['two [Echo("34")', " b"])

    async def both():
        return await asyncio.gather(engine.run("q1"), engine.run("q2"))

    first, second = asyncio.run(both())
    assert {first.answer, second.answer} == {"one 21 a", "two 43 b"}
    results = {f.answer: f.trace[0].result for f in (first, second)}
    assert results == {"one 21 a": "21", "two 43 b": "43"}


def test_earlier_turns_come_before_the_new_question(make_engine):
    engine, backend = make_engine("It is 6.")
    final = run(engine, "And 3+3?", history=[("What is 2+2?", "It is 4.")])
    assert final.answer == "It is 6."
    prompt = backend.prompts[0]
    earlier = prompt.index("Question: What is 2+2?\nAnswer: It is 4.\n\n")
    assert earlier < prompt.index("Question: And 3+3?") == prompt.rindex("Question:")


def test_streaming_takes_history_too(make_engine):
    engine, backend = make_engine("ok")
    collect(engine, "Next?", history=[("First?", "Yes.")])
    assert "Question: First?\nAnswer: Yes.\n\nQuestion: Next?" in backend.prompts[0]


# -- strategies and self-consistency --------------------------------------------------------------
def test_a_program_is_run_once_its_block_closes_and_the_answer_states_its_output(make_engine):
    python = PrintingPython()
    engine, backend = make_engine(
        ["Let me compute.\n```python\nx = 2 + 3\nprint(x)\n```", "The farm has x = 5 cows."],
        tools=[EchoTool(), python],
    )
    events = collect(engine, "A farm has 2 cows and buys 3. How many?", strategy="program")
    final = events[-1]
    assert python.programs == ["x = 2 + 3\nprint(x)"]
    assert final.text.endswith("```\n```output\nx\n```\nThe farm has x = 5 cows.")
    assert final.answer == "Let me compute.\n\nThe farm has x = 5 cows."
    assert final.strategy == "program"
    calls = [e for e in events if isinstance(e, CallEvent)]
    assert [(c.tool, c.argument) for c in calls] == [("Python", "x = 2 + 3\nprint(x)")]
    prompt = backend.prompts[0]
    assert "Solve the problem by writing a Python program" in prompt
    assert prompt.endswith("<user>A farm has 2 cows and buys 3. How many?</user>\n<assistant>")
    assert "Echoes its input" not in prompt  # the strategy's tools only


def test_a_program_whose_stated_answer_differs_is_caught(make_engine):
    engine, _ = make_engine(
        ["```python\nprint(7)\n```", "So the answer is 8."], tools=[PrintingPython()]
    )
    final = run(engine, "3 + 4?", strategy="program")
    assert final.value == "7"
    assert [(c.kind, c.stated, c.computed) for c in final.checks] == [
        ("stated_answer_differs", "8", "7")
    ]


def test_a_failed_program_is_read_by_the_model_which_repairs_it(make_engine):
    python = PrintingPython()
    engine, _ = make_engine(
        ["```python\nanswer\n```", "```python\nprint(12)\n```", "It is 12."], tools=[python]
    )
    final = run(engine, "q", strategy="program")
    assert [(r.result, r.error is not None) for r in final.trace] == [(None, True), ("12", False)]
    assert "```output\nError: NameError" in final.text
    assert final.value == "12" and final.checks == ()


def test_cot_asks_the_model_alone_with_its_own_system_prompt(make_engine):
    engine, backend = make_engine(r"2 + 3 = 5, so \boxed{5}.")
    final = run(engine, "What is 2 + 3?", strategy="cot")
    assert final.value == "5" and final.trace == ()
    assert backend.prompts[0] == (
        "<system>You are a scripted model.</system>\n<user>What is 2 + 3?\n"
        "Please reason step by step, and put your final answer within \\boxed{}.</user>\n"
        "<assistant>"
    )


def test_calculator_strategy_reasons_over_lines_with_calls(make_engine):
    calculator = Calculator()
    try:
        engine, backend = make_engine(
            ["She has 9 + 4 = [Calculator(9+4)", " 13 apples.\nThen 13 * 2 = [Calculator(13*2)",
             " 26.\nThe answer is 26."],
            tools=[calculator, EchoTool()],
        )  # fmt: skip
        final = run(engine, "q", strategy="calculator")
    finally:
        calculator.close()
    assert [r.result for r in final.trace] == ["13", "26"]
    assert final.value == "26" and final.text.count("\n") == 2  # a newline is no stop here
    assert "one step per line" in backend.prompts[0]


def test_a_strategy_that_names_tools_refuses_others(make_engine):
    engine, _ = make_engine("x", tools=[EchoTool()])
    with pytest.raises(BadRequest, match="strategy 'program' needs the Python tool"):
        run(engine, strategy="program")
    with pytest.raises(BadRequest, match="samples must be from 1 to 16"):
        run(engine, samples=17)


def test_samples_fork_the_read_prompt_and_vote(make_engine):
    replies = [
        ["```python\nprint(5)\n```", "It is 5."],
        ["```python\nprint(6)\n```", "It is 6."],
        ["```python\nprint(5.0)\n```", "It is 5."],
    ]
    engine, backend = make_engine(*replies, tools=[PrintingPython()])
    events = collect(engine, "2 + 3?", strategy="program", samples=3, sampling=Sampling(seed=4))
    final = events[-1]
    assert len(backend.prompts) == 1  # the prompt was read once; the forks share it
    first, *forks = backend.sessions
    assert len(forks) == 2 and all(f.feeds[0] != first.feeds[0] for f in forks)
    assert [(v.value, v.samples) for v in final.votes] == [("5", (0, 2)), ("6", (1,))]
    assert final.sample in (0, 2) and final.value in ("5", "5.0")
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert {e.sample for e in tokens} == {0, 1, 2}
    results = [e for e in events if isinstance(e, ResultEvent)]
    assert sorted(r.sample for r in results) == [0, 1, 2]
    assert all(r.sample == final.sample for r in final.trace)
    # Every sample's tokens (one a character here) count; the prompt's, once.
    assert final.usage.completion_tokens == sum(len("".join(r)) for r in replies)
    assert final.usage.prompt_tokens == len(first.feeds[0])


def test_default_samples_apply_to_the_default_strategy_only(make_engine):
    engine, backend = make_engine("It is 4.", "It is 4.", "It is 5.", tools=[EchoTool()])
    engine.config = EngineConfig(strategy="toolformer", samples=3)
    final = run(engine, "2 + 2?")
    assert len(final.votes) == 2 and final.value == "4"
    backend.queue("Once.")
    final = run(engine, "2 + 2?", strategy="toolformer")
    assert final.votes == () and final.sample is None


def test_tir_reasons_in_sentences_with_programs_and_boxes_its_answer(make_engine):
    engine, backend = make_engine(
        ["Half of 12 is 6.\n```python\nprint(42)\n```", "So it is \\boxed{42}."],
        tools=[PrintingPython()],
    )
    final = run(engine, "What is half of 12, times 7?", strategy="tir")
    assert final.value == "42" and final.checks == () and final.trace[0].result == "42"
    assert backend.prompts[0].endswith(
        "<user>What is half of 12, times 7?\nPlease integrate natural language reasoning with "
        "programs to solve the problem above, and put your final answer within \\boxed{}.</user>\n"
        "<assistant>"
    )


def test_consensus_stops_when_its_first_members_agree(make_engine):
    python = PrintingPython()
    engine, backend = make_engine(
        ["Twice 21.\n```python\nprint(42)\n```", "So \\boxed{42}."],  # tir
        ["```python\nprint(42.0)\n```", "It is 42."],  # program
        tools=[python],
    )
    events = collect(engine, "What is twice 21?", strategy="consensus")
    final = events[-1]
    assert len(backend.prompts) == 2  # cot was never asked
    assert "integrate natural language reasoning" in backend.prompts[0]
    assert "Write only the program" in backend.prompts[1]
    assert final.strategy == "consensus" and final.value == "42" and final.sample == 0
    assert [(v.value, v.samples, v.strategies) for v in final.votes] == [
        ("42", (0, 1), ("tir", "program"))
    ]
    said = [e.text for e in events if isinstance(e, AnswerEvent)]
    assert said == [final.answer] == ["Twice 21.\n\nSo \\boxed{42}."]


def test_consensus_asks_cot_when_they_disagree_and_takes_the_majority(make_engine):
    engine, backend = make_engine(
        ["```python\nprint(40)\n```", "So \\boxed{40}."],  # tir
        ["```python\nprint(42)\n```", "It is 42."],  # program
        "21 * 2 = 42, so \\boxed{42}.",  # cot
        tools=[PrintingPython()],
    )
    final = run(engine, "What is twice 21?", strategy="consensus")
    assert len(backend.prompts) == 3 and "step by step" in backend.prompts[2]
    assert final.value == "42" and final.sample == 1 and final.answer == "It is 42."
    assert [v.samples for v in final.votes] == [(1, 2), (0,)]
    assert final.trace[0].sample == 1


def test_a_three_way_split_goes_to_tir_and_a_majority_of_three_wins(make_engine):
    engine, backend = make_engine(
        ["```python\nprint(40)\n```", "So \\boxed{40}."],
        ["```python\nprint(42)\n```", "It is 42."],
        "So \\boxed{44}.",
        tools=[PrintingPython()],
    )
    final = run(engine, "What is twice 21?", strategy="consensus")
    assert len(backend.prompts) == 3 and final.value == "40" and final.sample == 0
    assert [v.samples for v in final.votes] == [(0,), (1,), (2,)]


def test_consensus_stops_at_a_majority_of_three(make_engine):
    engine, backend = make_engine(
        ["```python\nprint(40)\n```", "So \\boxed{40}."],
        ["```python\nprint(42)\n```", "It is 42."],
        "So \\boxed{40}.",
        "never asked",
        tools=[PrintingPython()],
    )
    final = run(engine, "What is twice 21?", strategy="consensus")
    assert len(backend.prompts) == 3 and final.value == "40" and final.sample == 0


def test_consensus_members_keep_their_own_token_budgets(make_engine):
    engine, _ = make_engine(tools=[PrintingPython()])
    plan = engine.plan("What is twice 21?", strategy="consensus")
    assert plan.sampling.max_new_tokens is None  # each member's own, unless the request sets it
    asked = engine.plan(
        "What is twice 21?", strategy="consensus", sampling=Sampling(max_new_tokens=9)
    )
    assert asked.sampling.max_new_tokens == 9


def test_consensus_takes_one_sample(make_engine):
    engine, _ = make_engine("x", tools=[PrintingPython()])
    with pytest.raises(BadRequest, match="votes among its members: one sample"):
        run(engine, strategy="consensus", samples=3)
