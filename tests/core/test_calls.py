"""Tests for the inline-call grammar: parsing, streaming, splicing, stripping, caps, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_server.core.grammar import (
    ARROW,
    MAX_ARGS_CHARS,
    MAX_CODE_CHARS,
    MAX_NAME_CHARS,
    MAX_SPLICED_CHARS,
    Call,
    CallScanner,
    Malformed,
    Phase,
    Segment,
    merge_text,
    parse,
    quote,
    render,
    safe_result,
    splice_text,
    strip_calls,
    unquote,
)


def raw(text: str, segments: list[Segment]) -> str:
    """The source text the segments cover, in order."""
    return "".join(s if isinstance(s, str) else text[s.start : s.end] for s in segments)


def only_call(text: str) -> Call:
    segments = parse(text)
    assert len(segments) == 1, segments
    call = segments[0]
    assert isinstance(call, Call), call
    return call


# -- single calls ---------------------------------------------------------------------------------
def test_simple_call_with_offsets() -> None:
    text = "Ratio: [Calculator(400/1400)] done"
    segments = parse(text)
    start = text.index("[")
    end = text.index("]") + 1
    assert segments == ["Ratio: ", Call("Calculator", "400/1400", None, start, end), " done"]
    assert text[start:end] == "[Calculator(400/1400)]"


def test_spliced_call_has_result() -> None:
    text = "[Calculator(400/1400) → 0.2857]"
    assert parse(text) == [Call("Calculator", "400/1400", "0.2857", 0, len(text))]


def test_ascii_arrow_is_accepted() -> None:
    text = "[Calculator(400/1400) -> 0.2857]"
    assert parse(text) == [Call("Calculator", "400/1400", "0.2857", 0, len(text))]


def test_arrow_without_spaces() -> None:
    assert only_call("[Calculator(1+1)->2]").result == "2"
    assert only_call("[Calculator(1+1)→2]").result == "2"


def test_result_is_stripped_and_may_be_empty() -> None:
    assert only_call("[Calculator(1)  →   4  ]").result == "4"
    assert only_call("[Calculator(1) → ]").result == ""


def test_underscore_and_digits_in_name() -> None:
    call = only_call("[web_search2(x)]")
    assert call.name == "web_search2"


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("[Calculator((2+3)*4)]", "(2+3)*4"),
        ('[Python("x = [1, (2, 3)]")]', '"x = [1, (2, 3)]"'),
        ("[Python(x = [1, (2, 3)])]", "x = [1, (2, 3)]"),
        ("[Python({'a': [1, {2: (3)}]})]", "{'a': [1, {2: (3)}]}"),
        ("[Calculator(((1)))]", "((1))"),
    ],
)
def test_nested_brackets_in_arguments(text: str, args: str) -> None:
    assert only_call(text) == Call(text[1 : text.index("(")], args, None, 0, len(text))


def test_quoted_argument_with_escapes_and_brackets() -> None:
    text = r'[Search("a ] b ) [ \" c")]'
    call = only_call(text)
    assert call.name == "Search"
    assert call.args == r'"a ] b ) [ \" c"'
    assert call.argument == 'a ] b ) [ " c'


def test_single_quoted_argument() -> None:
    call = only_call("[Search('it\\'s [here] (really)')]")
    assert call.argument == "it's [here] (really)"


def test_escaped_backslash_before_closing_quote() -> None:
    call = only_call(r'[Search("dir\\")]')
    assert call.argument == "dir\\"


def test_argument_escapes_newline_and_tab() -> None:
    assert only_call(r'[Python("a\nb\tc")]').argument == "a\nb\tc"


def test_unquoted_argument_is_passed_as_is() -> None:
    assert only_call("[Calculator( 2 + 2 )]").argument == "2 + 2"
    # Two literals are not one string literal: the tool gets the text.
    assert only_call('[Python("a" + "b")]').argument == '"a" + "b"'


@pytest.mark.parametrize(
    "value", ["", "plain", 'q"uote', "back\\slash", "a\nb\tc\rd", "台湾 ] ( ["]
)
def test_quote_unquote_round_trip(value: str) -> None:
    literal = quote(value)
    assert literal.startswith('"') and literal.endswith('"')
    assert "\n" not in literal
    assert unquote(literal) == value


def test_unicode_argument() -> None:
    text = '[MT("台湾最高的山")]'
    call = only_call(text)
    assert call == Call("MT", '"台湾最高的山"', None, 0, len(text))
    assert call.argument == "台湾最高的山"


def test_unicode_text_around_a_call_keeps_offsets() -> None:
    text = "山は[Calculator(1+1) → 2]です"
    segments = parse(text)
    assert segments[0] == "山は"
    assert segments[2] == "です"
    call = segments[1]
    assert isinstance(call, Call)
    assert text[call.start : call.end] == "[Calculator(1+1) → 2]"


def test_several_calls_keep_text_between_in_order() -> None:
    text = "A [Calculator(1+1) → 2] B [Search(\"x\")] C [MT('y') -> z]."
    segments = parse(text)
    assert [s if isinstance(s, str) else (s.name, s.argument, s.result) for s in segments] == [
        "A ",
        ("Calculator", "1+1", "2"),
        " B ",
        ("Search", "x", None),
        " C ",
        ("MT", "y", "z"),
        ".",
    ]
    assert raw(text, segments) == text


def test_adjacent_calls() -> None:
    segments = parse("[A(1)][B(2)]")
    assert segments == [Call("A", "1", None, 0, 6), Call("B", "2", None, 6, 12)]


def test_result_containing_brackets() -> None:
    text = '[Search("q") → see [1] and [2]]'
    assert parse(text) == [Call("Search", '"q"', "see [1] and [2]", 0, len(text))]


def test_result_containing_arrow_and_parentheses() -> None:
    assert only_call("[A(1) → f(x) → y)]").result == "f(x) → y)"


# -- malformed calls ------------------------------------------------------------------------------
def test_unterminated_call_at_end_of_stream() -> None:
    text = "Answer: [Calculator(2+"
    segments = parse(text)
    assert segments[0] == "Answer: "
    bad = segments[1]
    assert isinstance(bad, Malformed)
    assert "unterminated" in bad.reason
    assert bad.text == "[Calculator(2+"
    assert (bad.start, bad.end) == (8, len(text))
    assert len(segments) == 2


@pytest.mark.parametrize(
    "text",
    ["[Calculator(1)", "[Calculator(1) ", "[Calculator(1) →", "[Calculator(1) -", "[A(1) → [x]"],
)
def test_unterminated_in_every_phase(text: str) -> None:
    (bad,) = parse(text)
    assert isinstance(bad, Malformed)
    assert "unterminated" in bad.reason
    assert bad.text == text


def test_unbalanced_bracket_in_arguments() -> None:
    text = "[Calculator(2+3] and on"
    segments = parse(text)
    bad = segments[0]
    assert isinstance(bad, Malformed)
    assert bad.text == "[Calculator(2+3]"
    assert "unbalanced" in bad.reason and "']'" in bad.reason and "Calculator" in bad.reason
    assert segments[1:] == [" and on"]


def test_wrong_closer_inside_nested_arguments() -> None:
    (bad, rest) = parse("[Python([1, 2)])")
    assert isinstance(bad, Malformed)
    assert "unbalanced ')'" in bad.reason
    assert bad.text == "[Python([1, 2)"
    assert rest == "])"


def test_text_after_arguments_is_malformed_and_text_follows() -> None:
    text = "[Calc(1) x"
    segments = parse(text)
    bad = segments[0]
    assert isinstance(bad, Malformed)
    assert "expected ']'" in bad.reason and "Calc" in bad.reason
    assert segments[1] == "x"
    assert raw(text, segments) == text


def test_dash_not_followed_by_arrow_head_is_malformed() -> None:
    text = "[Calc(1) -x] y"
    segments = parse(text)
    assert isinstance(segments[0], Malformed)
    assert segments[0].text == "[Calc(1) -"
    assert segments[1:] == ["x] y"]


def test_malformed_then_valid_call_directly_after() -> None:
    text = "[Calc(1) x[Calc(2)]"
    segments = parse(text)
    assert isinstance(segments[0], Malformed)
    assert segments[1] == "x"
    assert segments[2] == Call("Calc", "2", None, 10, len(text))


# -- text that only looks like a call -------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "[1]",
        "see [1] and [2].",
        "[citation needed]",
        "[text](http://x.y)",
        "[Calculator]",
        "[ Calculator(1)]",
        "[Calculator (1)]",
        "a[0]",
        "[]",
        "[[",
        "[",
        "[1(2)]",
        "[Calc-ulator(1)]",
        "[Cälc(1)]",
        "x = [a for a in b]",
    ],
)
def test_text_that_only_looks_like_a_call(text: str) -> None:
    assert parse(text) == [text]


def test_call_right_after_lookalike_text() -> None:
    text = "[1] [Calculator(1+1)]"
    assert parse(text) == ["[1] ", Call("Calculator", "1+1", None, 4, len(text))]


def test_call_right_after_an_open_bracket() -> None:
    text = "[[Calculator(1)]]"
    assert parse(text) == ["[", Call("Calculator", "1", None, 1, 16), "]"]


def test_call_after_markdown_link() -> None:
    text = "[a](b)[C(1)]"
    assert parse(text) == ["[a](b)", Call("C", "1", None, 6, 12)]


def test_empty_text() -> None:
    assert parse("") == []


# -- the streaming scanner ------------------------------------------------------------------------
def test_pause_at_call_returns_characters_up_to_closing_parenthesis() -> None:
    scanner = CallScanner()
    chunk = "x [Calc(1) and more"
    consumed = scanner.feed(chunk, pause_at_call=True)
    assert consumed == len("x [Calc(1)")
    assert scanner.phase is Phase.AFTER_ARGS
    assert scanner.pending == Call("Calc", "1", None, 2, consumed)
    assert scanner.pending.argument == "1"
    spliced = splice_text("4")
    assert scanner.feed(spliced) == len(spliced)
    assert scanner.phase is Phase.TEXT
    assert scanner.finish() == ["x ", Call("Calc", "1", "4", 2, consumed + len(spliced))]


def test_pause_at_call_with_quoted_parenthesis_pauses_at_the_real_closer() -> None:
    scanner = CallScanner()
    chunk = '[Search(")(")] tail'
    consumed = scanner.feed(chunk, pause_at_call=True)
    assert chunk[:consumed] == '[Search(")(")'
    assert scanner.pending.argument == ")("


def test_pause_at_call_without_a_call_consumes_everything() -> None:
    scanner = CallScanner()
    assert scanner.feed("[1] text (a)", pause_at_call=True) == len("[1] text (a)")
    assert scanner.phase is Phase.TEXT


def test_pause_at_call_across_chunks() -> None:
    scanner = CallScanner()
    assert scanner.feed("[Calc", pause_at_call=True) == 5
    assert scanner.feed("(2*", pause_at_call=True) == 3
    assert scanner.feed("3)]", pause_at_call=True) == 2
    assert scanner.pending.args == "2*3"
    scanner.feed(splice_text("6"))
    assert scanner.finish() == [Call("Calc", "2*3", "6", 0, 10 + len(splice_text("6")))]


def test_pending_call_closed_without_result() -> None:
    scanner = CallScanner()
    scanner.feed("[Calc(1)", pause_at_call=True)
    scanner.feed("]")
    assert scanner.finish() == [Call("Calc", "1", None, 0, 9)]


@pytest.mark.parametrize(
    ("text", "phase", "name"),
    [
        ("x ", Phase.TEXT, ""),
        ("x [", Phase.NAME, ""),
        ("x [Calc", Phase.NAME, "Calc"),
        ("x [Calc(", Phase.ARGS, "Calc"),
        ("x [Calc((1)", Phase.ARGS, "Calc"),
        ('x [Calc(")', Phase.ARGS, "Calc"),
        ("x [Calc(1)", Phase.AFTER_ARGS, "Calc"),
        ("x [Calc(1) ", Phase.AFTER_ARGS, "Calc"),
        ("x [Calc(1) -", Phase.AFTER_ARGS, "Calc"),
        ("x [Calc(1) →", Phase.RESULT, "Calc"),
        ("x [Calc(1) ->", Phase.RESULT, "Calc"),
        ("x [Calc(1) → [2", Phase.RESULT, "Calc"),
        ("x [Calc(1) → 2]", Phase.TEXT, "Calc"),
        ("x [1", Phase.TEXT, ""),
    ],
)
def test_phase_and_name_so_far(text: str, phase: Phase, name: str) -> None:
    scanner = CallScanner()
    scanner.feed(text)
    assert scanner.phase is phase
    if phase is not Phase.TEXT:
        assert scanner.name_so_far == name


def test_name_so_far_grows_character_by_character() -> None:
    scanner = CallScanner()
    seen = []
    for char in "[Calculator(":
        scanner.feed(char)
        seen.append((scanner.phase, scanner.name_so_far))
    assert seen[0] == (Phase.NAME, "")
    assert seen[4] == (Phase.NAME, "Calc")
    assert seen[10] == (Phase.NAME, "Calculator")
    assert seen[11] == (Phase.ARGS, "Calculator")


def test_segments_complete_as_they_are_fed() -> None:
    scanner = CallScanner()
    scanner.feed("a [B(1)")
    assert scanner.segments == ["a "]
    scanner.feed("] c")
    assert scanner.segments == ["a ", Call("B", "1", None, 2, 8)]
    assert scanner.finish() == ["a ", Call("B", "1", None, 2, 8), " c"]


def test_finish_turns_an_open_name_back_into_text() -> None:
    scanner = CallScanner()
    scanner.feed("see [Calc")
    assert merge_text(scanner.finish()) == ["see [Calc"]


# -- strip_calls ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The model repeats the result itself (Toolformer's form): the call goes.
        ("It is [Calculator(2+2) → 4] 4.", "It is 4."),
        ("It is [Calculator(2+2) → 4] $4.", "It is $4."),
        ("It is [Calculator(0.5*2) → 1.0] 1 cup.", "It is 1 cup."),
        ("Ratio [Calculator(400/1400) → 0.2857] 0.2857.", "Ratio 0.2857."),
        # The call stands for the value in its sentence: its result stays in its place.
        (
            "Lawrence county has [Calculator(907611+455682) → 1363293] kids.",
            "Lawrence county has 1363293 kids.",
        ),
        ("The answer is [Calculator(2+2) → 4].", "The answer is 4."),
        ("Total: [Calculator(3*4) → 12]", "Total: 12"),
        ("x [Calculator(1) → 1], y", "x 1, y"),
        ("a [A(1) → 1] [B(2) → 2] b", "a 1 2 b"),
        ("It is [Calculator(1/8) → 0.125] of it", "It is 0.125 of it"),
        ("Rate [Calculator(x) → -2.5e-3%] now", "Rate -2.5e-3% now"),
        # A call that opens a sentence is a note before it, not part of it.
        ("[Calculator(1) → 1] Start.", "Start."),
        ("Done. [Calculator(1) → 1] Next.", "Done. Next."),
        ("a\n[Calculator(1) → 1] b", "a\nb"),
        # No result, a failed call, a word or a passage: nothing to stand for.
        ("End [Calculator(1) → Error: bad input].", "End."),
        ("and then [Slow(1) → done] we are", "and then we are"),
        ("(see [Search(x) → y])", "(see)"),
        ("End [Calculator(1)].", "End."),
        ("See [Search(x) → " + "word " * 20 + "] now", "See now"),
        ("Total [Calculator(x) → 1,000 and more] now", "Total now"),
        ("See [Python(x) → 1\n2] now", "See now"),
        ("Broken [Calc(2+3] here.", "Broken here."),
        ("Open [Calc(2+", "Open"),
        ("keep [1] and [text](u)", "keep [1] and [text](u)"),
    ],
)
def test_strip_calls(text: str, expected: str) -> None:
    assert strip_calls(text) == expected


def test_strip_calls_keeps_other_lines_indentation_and_newlines() -> None:
    text = "Result:\n  first [Calculator(1)] line\n    second line\n\n  third"
    assert strip_calls(text) == "Result:\n  first line\n    second line\n\n  third"


def test_strip_calls_on_its_own_line() -> None:
    assert strip_calls("a\n[Calc(1) → 1]\nb") == "a\n\nb"
    assert strip_calls("a: [Calc(1) → 1]\nb") == "a: 1\nb"


def test_strip_calls_keeps_indentation_of_line_starting_with_call() -> None:
    text = "def f():\n    [Calculator(1) → 1] return 1"
    assert strip_calls(text) == "def f():\n    return 1"


# -- safe_result and render -----------------------------------------------------------------------
@pytest.mark.parametrize("result", ["x ] y", "] [", "[[", "a]]", "x [ y", "[1]]"])
def test_safe_result_cannot_close_the_call_early(result: str) -> None:
    text = render("A", "1", result)
    call = only_call(text)
    assert call.name == "A" and call.end == len(text)
    assert call.result == safe_result(result).strip()
    assert "[" not in call.result and "]" not in call.result


@pytest.mark.parametrize("result", ["see [1] and [2]", "[[a]]", "plain", ""])
def test_safe_result_keeps_balanced_results(result: str) -> None:
    assert safe_result(result) == result


def test_render_forms() -> None:
    assert render("Calculator", "1+1") == "[Calculator(1+1)]"
    assert render("Calculator", "1+1", "2") == f"[Calculator(1+1) {ARROW} 2]"
    assert splice_text("2") == f" {ARROW} 2]"
    assert "[A(1)" + splice_text("x ] y") == render("A", "1", "x ] y")


# -- length caps ----------------------------------------------------------------------------------
def test_arguments_at_the_cap_are_accepted() -> None:
    assert len(only_call("[Calculator(" + "1" * MAX_ARGS_CHARS + ")]").args) == MAX_ARGS_CHARS


def test_arguments_over_the_cap_are_malformed() -> None:
    text = "[Calculator(" + "1" * (MAX_ARGS_CHARS + 1) + ")]"
    segments = parse(text)
    bad = segments[0]
    assert isinstance(bad, Malformed)
    assert f"longer than {MAX_ARGS_CHARS}" in bad.reason
    assert raw(text, segments) == text


def test_quoted_arguments_over_the_cap_are_malformed() -> None:
    (bad,) = parse('[Search("' + "a" * (MAX_ARGS_CHARS + 10) + '")]')[:1]
    assert isinstance(bad, Malformed)


def test_result_at_the_cap_is_accepted() -> None:
    call = only_call("[A(1) →" + "x" * MAX_SPLICED_CHARS + "]")
    assert call.result == "x" * MAX_SPLICED_CHARS


def test_rendered_result_at_the_cap_is_accepted() -> None:
    result = "x" * MAX_SPLICED_CHARS
    assert only_call(render("A", "1", result)).result == result


def test_result_over_the_cap_is_malformed() -> None:
    text = "[A(1) → " + "x" * (MAX_SPLICED_CHARS + 1) + "]"
    segments = parse(text)
    bad = segments[0]
    assert isinstance(bad, Malformed)
    assert f"longer than {MAX_SPLICED_CHARS}" in bad.reason
    assert raw(text, segments) == text


def test_name_at_the_cap_is_accepted() -> None:
    assert only_call("[" + "A" * MAX_NAME_CHARS + "(1)]").name == "A" * MAX_NAME_CHARS


def test_name_over_the_cap_is_malformed() -> None:
    segments = parse("[" + "A" * (MAX_NAME_CHARS + 1) + "(1)]")
    assert isinstance(segments[0], Malformed)


# -- properties -----------------------------------------------------------------------------------
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
any_text = st.text(st.characters(codec="utf-8"), max_size=30)
tricky_char = st.sampled_from(list("[]()\"'\\{} →->\n") + ["[Calc", "[A(", ") →"])
tricky_text = st.lists(st.one_of(tricky_char, st.characters(codec="utf-8")), max_size=15).map(
    "".join
)


@settings(max_examples=200, deadline=None)
@given(name=names, argument=any_text, result=st.none() | any_text)
def test_render_parse_round_trip(name: str, argument: str, result: str | None) -> None:
    text = render(name, quote(argument), result)
    expected = None if result is None else safe_result(result).strip()
    assert parse(text) == [Call(name, quote(argument), expected, 0, len(text))]
    call = parse(text)[0]
    assert isinstance(call, Call)
    assert call.argument == argument


rendered_calls = st.builds(
    render,
    names,
    st.one_of(any_text.map(quote), st.sampled_from(["1+1", "(2)*[3]", "{a: 'b'}"])),
    st.none() | tricky_text,
)
streams = st.lists(st.one_of(tricky_text, rendered_calls), max_size=8).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=streams, data=st.data())
def test_incremental_parsing_matches_whole_parsing(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10), label="cuts"))
    bounds = [0, *cuts, len(text)]
    chunks = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    pause = data.draw(st.booleans(), label="pause_at_call")

    scanner = CallScanner()
    for chunk in chunks:
        rest = chunk
        while rest:
            consumed = scanner.feed(rest, pause_at_call=pause)
            assert 0 < consumed <= len(rest)
            rest = rest[consumed:]
    assert merge_text(scanner.finish()) == parse(text)


@settings(max_examples=200, deadline=None)
@given(text=streams)
def test_segments_reconstruct_the_text(text: str) -> None:
    segments = parse(text)
    assert raw(text, segments) == text
    position = 0
    for segment in segments:
        if isinstance(segment, str):
            assert segment
            position += len(segment)
            continue
        assert segment.start == position
        position = segment.end
        if isinstance(segment, Malformed):
            assert segment.text == text[segment.start : segment.end]
            assert segment.reason
    assert position == len(text)
    # parse merges text: no two strings in a row.
    assert all(
        not (isinstance(a, str) and isinstance(b, str))
        for a, b in zip(segments, segments[1:], strict=False)
    )


# -- fenced programs ------------------------------------------------------------------------------
PROGRAM = "x = (1 + 2)  # a [bracket\nprint(x)"


def test_a_fenced_python_block_is_a_call_of_the_fence_tool() -> None:
    text = f"Let me compute.\n```python\n{PROGRAM}\n```\nSo it is 3."
    segments = parse(text, "Python")
    start = text.index("```")
    end = text.index("```\nSo") + 3
    assert segments == [
        "Let me compute.\n",
        Call("Python", PROGRAM, None, start, end, fenced=True),
        "\nSo it is 3.",
    ]
    assert segments[1].argument == PROGRAM  # verbatim: no unquoting, no stripping


def test_a_fenced_call_with_its_output_block_has_that_result() -> None:
    text = render("Python", PROGRAM, "3\n4", fenced=True) + "The answer is 4."
    call = parse(text, "Python")[0]
    assert call == Call("Python", PROGRAM, "3\n4", 0, text.index("\nThe answer"), fenced=True)
    assert strip_calls(text, "Python") == "The answer is 4."


@pytest.mark.parametrize("opener", ["```py\n", "```python3\n", "  ```python\n"])
def test_fence_openers(opener: str) -> None:
    segments = parse(f"{opener}print(1)\n```", "Python")
    assert any(isinstance(s, Call) and s.args == "print(1)" for s in segments)


@pytest.mark.parametrize(
    "text",
    [
        "```js\nlet x = 1\n```",  # another language
        "Use ```python\nprint(1)\n``` inline",  # not at the start of a line
        "``x``",  # backticks in prose
    ],
)
def test_other_code_blocks_and_backticks_are_text(text: str) -> None:
    assert parse(text, "Python") == [text]


def test_without_a_fence_tool_code_blocks_are_text() -> None:
    text = "```python\nprint(1)\n```"
    assert parse(text) == [text]
    assert strip_calls(text) == text


def test_an_unclosed_program_is_malformed_and_a_long_one_too() -> None:
    (bad,) = parse("```python\nprint(1)\n", "Python")
    assert isinstance(bad, Malformed) and bad.reason == "unterminated call"
    segments = parse("```python\n" + "x" * (MAX_CODE_CHARS + 1) + "\n```", "Python")
    assert isinstance(segments[0], Malformed) and "longer than" in segments[0].reason


def test_the_stream_pauses_at_the_closing_fence_and_takes_the_splice() -> None:
    scanner = CallScanner("Python")
    text = f"```python\n{PROGRAM}\n```\nand more"
    consumed = scanner.feed(text, pause_at_call=True)
    assert text[:consumed].endswith("\n```") and scanner.phase is Phase.AFTER_ARGS
    assert scanner.pending == Call("Python", PROGRAM, None, 0, consumed, fenced=True)
    scanner.feed(splice_text("Error: NameError (line 1)", fenced=True))
    scanner.feed("\nFixed.")
    assert scanner.finish()[0] == Call(
        "Python", PROGRAM, "Error: NameError (line 1)", 0, consumed + 40, fenced=True
    )


def test_an_output_that_holds_a_fence_cannot_end_its_block() -> None:
    text = render("Python", "print('```')", "```\nmore", fenced=True)
    (call, after) = parse(text, "Python")
    assert isinstance(call, Call) and call.result == "` ` `\nmore"
    assert after == "\n"  # the line break the splice ends with, text


fenced_calls = st.builds(
    lambda code, result: render("Python", code, result, fenced=True),
    st.text(st.sampled_from(list("ab(]\n`#'\" ")), max_size=12).filter(lambda c: "\n`" not in c),
    st.none() | st.text(st.sampled_from(list("12\n`x")), max_size=8),
)
fenced_streams = st.lists(
    st.one_of(tricky_text, rendered_calls, fenced_calls, st.sampled_from(["\n", "\n```", "`"])),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=fenced_streams, data=st.data())
def test_fenced_streams_parse_alike_in_any_chunks_and_reconstruct(
    text: str, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10), label="cuts"))
    bounds = [0, *cuts, len(text)]
    scanner = CallScanner("Python")
    for a, b in zip(bounds, bounds[1:], strict=False):
        rest = text[a:b]
        while rest:
            rest = rest[scanner.feed(rest, pause_at_call=True) :]
    segments = parse(text, "Python")
    assert merge_text(scanner.finish()) == segments
    assert raw(text, segments) == text


def test_an_escaped_bracket_opens_no_call() -> None:
    text = r"\[Calculator(2+2)\] but [Calculator(3)] and \\[Calculator(4)]"
    calls = [s for s in parse(text) if isinstance(s, Call)]
    assert [c.args for c in calls] == ["3", "4"]  # `\\[` is an escaped backslash, then a call


def test_without_inline_calls_only_fenced_programs_are_calls() -> None:
    text = "So [Python(1+1)] is text.\n```python\nprint(2)\n```"
    segments = parse(text, "Python", inline=False)
    assert segments[0] == "So [Python(1+1)] is text.\n"
    assert isinstance(segments[1], Call) and segments[1].fenced
    assert strip_calls(text, "Python", inline=False) == "So [Python(1+1)] is text."
