"""The inline-call grammar: `[Name(args)]`, and its spliced form `[Name(args) → result]`.

One character-level scanner serves both whole texts (`parse`) and streams (`CallScanner.feed` in
chunks of any size), so the two cannot disagree. The rules:

- A call starts at `[` followed directly by an identifier and `(`. Anything else that starts with
  `[` — `[1]`, `[citation needed]`, a Markdown link `[x](url)`, `[Calculator]` — is plain text,
  and so is an escaped `\\[` (LaTeX's display math, Markdown's literal bracket).
- Inside the arguments, parentheses, brackets and braces nest, and quoted strings (with `\\`
  escapes) may hold any character, brackets included.
- After the closing `)`, either `]` ends a call awaiting its result, or `→` (or `->`) starts the
  result, which runs to the `]` that balances the call's `[`.
- Once a call has begun (`[Name(`), it can only end as a `Call` or as a `Malformed` segment with
  a reason: a broken call is never silently dropped or turned back into text.

A second, *fenced* form exists for one tool that takes a program (`CallScanner(fence="Python")`):
a Markdown code block opened by a line "```python" (or "```py") and closed by a line "```" is a
call of that tool with the code as its argument, and its result is the output block that
follows it ("```output", the lines, "```": the format of Qwen's tool-integrated reasoning). Code
models write programs this way and not inside `[Python(…)]`, where they write function
arguments instead (indented, with trailing commas); see prompts/strategies/program.j2.

Left out on purpose: keyword arguments and several arguments per call. A tool takes one string;
`Call.argument` unquotes it when it is a single string literal.

Long (over 300 lines) because the streaming scanner and the whole-text readers (parse, strip,
render) must agree character for character: they share one state machine here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

ARROW = "→"
MAX_NAME_CHARS = 64
MAX_ARGS_CHARS = 2_000
MAX_CODE_CHARS = 6_000  # a fenced program: a few dozen lines
FENCE = "```"
FENCE_OPENERS = tuple(f"{FENCE}{language}\n" for language in ("python", "py", "python3"))
OUTPUT_OPENER = f"\n{FENCE}output\n"
_FENCE_CLOSE = f"\n{FENCE}"
MAX_SPLICED_CHARS = 8_000  # a result as it stands in the text; tools cap theirs far lower
_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True)
class Call:
    """A complete call; `result` is None until the engine has spliced one in."""

    name: str
    args: str
    result: str | None = None
    start: int = 0
    end: int = 0
    fenced: bool = False  # written as a code block (the program is `args`, verbatim)

    @property
    def argument(self) -> str:
        """The argument as the tool receives it: unquoted if it is one string literal."""
        if self.fenced:
            return self.args
        text = self.args.strip()
        return unquote(text) if _is_one_string_literal(text) else text


@dataclass(frozen=True)
class Malformed:
    """Text that began as a call but broke the grammar."""

    text: str
    reason: str
    start: int = 0
    end: int = 0


Segment = str | Call | Malformed


class Phase(enum.Enum):
    TEXT = "text"
    NAME = "name"  # after `[`, reading the tool name
    ARGS = "args"  # inside the parentheses
    FENCE = "fence"  # reading a code block's opening line, "```python"
    CODE = "code"  # inside a fenced call's code block
    AFTER_ARGS = "after_args"  # the arguments closed: a result or `]` comes next
    RESULT = "result"  # after the arrow, up to the closing `]`


class CallScanner:
    """Incremental scanner: feed text in any chunks, read segments as they complete.

    `fence` names the tool that a fenced code block calls; None reads code blocks as text.
    `inline` False reads `[Name(…)]` as text (a strategy whose only calls are fenced programs).
    """

    def __init__(self, fence: str | None = None, *, inline: bool = True) -> None:
        self.segments: list[Segment] = []
        self.phase = Phase.TEXT
        self._fence_tool = fence
        self._inline = inline
        self._escaped_text = False  # the last text character was a backslash
        self._pos = 0
        self._text: list[str] = []
        self._line_blank = True  # nothing but spaces since the last newline: a fence may open
        self._reset_call()

    def _reset_call(self) -> None:
        self._start = 0
        self._raw: list[str] = []
        self._name = ""
        self._args: list[str] = []
        self._result: list[str] = []
        self._stack: list[str] = []
        self._quote = ""
        self._escaped = False
        self._dash = False
        self._fenced = False
        self._match = ""  # the output block's opener, as far as it has come (fenced calls)

    # -- what the engine reads between chunks -------------------------------------------------
    @property
    def name_so_far(self) -> str:
        """The tool name written so far (meaningful in `Phase.NAME`)."""
        return self._name

    @property
    def args_so_far(self) -> str:
        """The arguments written so far (meaningful in `Phase.ARGS`)."""
        return "".join(self._args)

    @property
    def pending(self) -> Call:
        """The call whose arguments just closed (meaningful in `Phase.AFTER_ARGS`)."""
        end = self._start + len(self._raw)
        return Call(self._name, "".join(self._args), None, self._start, end, self._fenced)

    # -- feeding ------------------------------------------------------------------------------
    def feed(self, chunk: str, *, pause_at_call: bool = False) -> int:
        """Scan `chunk`; return how many characters were consumed.

        With `pause_at_call`, scanning stops right after the `)` that closes a call's arguments,
        so the caller can splice the result in before anything the model wrote after it.
        """
        for i, char in enumerate(chunk):
            self._step(char)
            if pause_at_call and self.phase is Phase.AFTER_ARGS:
                return i + 1
        return len(chunk)

    def finish(self) -> list[Segment]:
        """End the stream: flush text and report an unfinished call; return all segments."""
        if self.phase is Phase.AFTER_ARGS and self._fenced:
            self._end_fenced_call()  # a program that was not run: a call awaiting its result
        if self.phase in (Phase.NAME, Phase.FENCE):
            self._abandon_call()
        elif self.phase is not Phase.TEXT:
            self._malformed("unterminated call")
        self._flush_text()
        return self.segments

    def _step(self, char: str) -> None:
        self._dispatch(char)
        self._pos += 1

    def _dispatch(self, char: str) -> None:
        handler = {
            Phase.TEXT: self._in_text,
            Phase.NAME: self._in_name,
            Phase.ARGS: self._in_args,
            Phase.FENCE: self._in_fence,
            Phase.CODE: self._in_code,
            Phase.AFTER_ARGS: self._after_args,
            Phase.RESULT: self._in_result,
        }[self.phase]
        handler(char)

    def _in_text(self, char: str) -> None:
        opens = char == "[" and self._inline and not self._escaped_text
        if opens or (char == "`" and self._fence_tool and self._line_blank):
            self._flush_text()
            self._reset_call()
            self._start = self._pos
            self._raw.append(char)
            self.phase = Phase.NAME if char == "[" else Phase.FENCE
        else:
            self._text.append(char)
            self._line_blank = char == "\n" or (self._line_blank and char in " \t")
            self._escaped_text = char == "\\" and not self._escaped_text

    def _in_fence(self, char: str) -> None:
        opener = "".join(self._raw) + char
        if not any(o.startswith(opener) for o in FENCE_OPENERS):
            # A code block in another language, or backticks in the text: it was text.
            self._abandon_call()
            self._in_text(char)
            return
        self._raw.append(char)
        if opener in FENCE_OPENERS:
            assert self._fence_tool is not None  # a fence opens only when one is named
            self._name, self._fenced = self._fence_tool, True
            self.phase = Phase.CODE

    def _in_code(self, char: str) -> None:
        self._raw.append(char)
        if len(self._args) >= MAX_CODE_CHARS:
            self._malformed(
                f"the program of {self._name} is longer than {MAX_CODE_CHARS} characters"
            )
            return
        self._args.append(char)
        # The closing fence is a line of its own; the opening line's newline counts as a line end.
        if ("\n" + "".join(self._args[-4:])).endswith(_FENCE_CLOSE):
            code = "".join(self._args)
            self._args = list(code[: len(code) - len(FENCE)].removesuffix("\n"))
            self.phase = Phase.AFTER_ARGS

    def _in_name(self, char: str) -> None:
        is_ident = char.isascii() and (
            char.isalpha() or char == "_" or (self._name and char.isdigit())
        )
        if is_ident:
            self._name += char
            self._raw.append(char)
            if len(self._name) > MAX_NAME_CHARS:
                self._malformed(f"tool name longer than {MAX_NAME_CHARS} characters")
        elif char == "(" and self._name:
            self._raw.append(char)
            self._stack = [")"]
            self.phase = Phase.ARGS
        else:
            # Not a call after all (`[1]`, `[citation needed]`, `[x](url)`): it was text.
            self._abandon_call()
            self._in_text(char)

    def _in_args(self, char: str) -> None:
        self._raw.append(char)
        if self._quote:
            self._add_arg(char)
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == self._quote:
                self._quote = ""
            return
        if char in _CLOSERS.values():
            if char != self._stack[-1]:
                self._malformed(f"unbalanced {char!r} in the arguments of {self._name}")
                return
            self._stack.pop()
            if not self._stack:
                self.phase = Phase.AFTER_ARGS
                return
        elif char in _CLOSERS:
            self._stack.append(_CLOSERS[char])
        elif char in "\"'" and not (self._args and self._args[-1].isalnum()):
            # A quote inside a word (`don't`) is an apostrophe, not the start of a string.
            self._quote = char
        self._add_arg(char)

    def _add_arg(self, char: str) -> None:
        if len(self._args) >= MAX_ARGS_CHARS:
            self._malformed(f"arguments of {self._name} longer than {MAX_ARGS_CHARS} characters")
            return
        self._args.append(char)

    def _after_args(self, char: str) -> None:
        if self._fenced:
            self._after_code(char)
        elif self._dash:
            if char == ">":
                self._raw.append(char)
                self.phase = Phase.RESULT
                return
            self._malformed(f"expected ']' or '{ARROW}' after the arguments of {self._name}")
            self._in_text(char)
        elif char == " ":
            self._raw.append(char)
        elif char == "]":
            self._raw.append(char)
            self._complete(None)
        elif char == ARROW:
            self._raw.append(char)
            self.phase = Phase.RESULT
        elif char == "-":
            self._raw.append(char)
            self._dash = True
        else:
            self._malformed(f"expected ']' or '{ARROW}' after the arguments of {self._name}")
            self._in_text(char)

    def _after_code(self, char: str) -> None:
        """After a closing fence: its output block, or (anything else) text."""
        self._match += char
        if OUTPUT_OPENER.startswith(self._match):
            if self._match == OUTPUT_OPENER:
                self._raw.extend(self._match)
                self.phase = Phase.RESULT
            return
        self._end_fenced_call()

    def _end_fenced_call(self) -> None:
        """The fenced call ends at its closing fence; what was read after it is text."""
        after = self._match
        end = self._start + len(self._raw)
        self.segments.append(Call(self._name, "".join(self._args), None, self._start, end, True))
        self.phase = Phase.TEXT
        self._line_blank = False  # right after the closing fence's backticks
        first = self._pos - len(after) + 1
        for offset, char in enumerate(after):  # read again, at their own positions
            self._pos = first + offset
            self._dispatch(char)

    def _in_result(self, char: str) -> None:
        self._raw.append(char)
        if self._fenced:
            self._result.append(char)
            if "".join(self._result[-4:]).endswith(_FENCE_CLOSE):
                self._complete("".join(self._result[: -len(_FENCE_CLOSE)]).strip("\n"))
            elif len(self._result) > MAX_SPLICED_CHARS + len(_FENCE_CLOSE):
                self._malformed(
                    f"output of {self._name} longer than {MAX_SPLICED_CHARS} characters"
                )
            return
        if char == "]" and not self._stack:
            self._complete("".join(self._result).strip())
            return
        if char == "[":
            self._stack.append("]")
        elif char == "]":
            self._stack.pop()
        self._result.append(char)
        if len(self._result) > MAX_SPLICED_CHARS + 1:  # + the space after the arrow
            self._malformed(f"result of {self._name} longer than {MAX_SPLICED_CHARS} characters")

    # -- closing a candidate call ---------------------------------------------------------------
    def _complete(self, result: str | None) -> None:
        args = "".join(self._args)
        end = self._pos + 1
        self.segments.append(Call(self._name, args, result, self._start, end, self._fenced))
        self.phase = Phase.TEXT
        self._line_blank = False  # after `]` or a closing fence's backticks

    def _malformed(self, reason: str) -> None:
        end = self._start + len(self._raw)
        self.segments.append(Malformed("".join(self._raw), reason, self._start, end))
        self.phase = Phase.TEXT

    def _abandon_call(self) -> None:
        self._text.extend(self._raw)
        self.phase = Phase.TEXT
        self._line_blank = False  # what was abandoned began with `[` or a backtick
        self._escaped_text = False

    def _flush_text(self) -> None:
        if self._text:
            self.segments.append("".join(self._text))
            self._text = []


def parse(text: str, fence: str | None = None, *, inline: bool = True) -> list[Segment]:
    """Split `text` into plain-text strings, calls and malformed calls, in order; `fence` and
    `inline` as for `CallScanner`."""
    scanner = CallScanner(fence, inline=inline)
    scanner.feed(text)
    return merge_text(scanner.finish())


def merge_text(segments: list[Segment]) -> list[Segment]:
    """Adjacent plain-text segments joined into one."""
    merged: list[Segment] = []
    for segment in segments:
        if isinstance(segment, str) and merged and isinstance(merged[-1], str):
            merged[-1] += segment
        else:
            merged.append(segment)
    return merged


def render(name: str, args: str, result: str | None = None, *, fenced: bool = False) -> str:
    """The text form of a call: `[Name(args)]`, or spliced `[Name(args) → result]`; fenced, the
    code block and its output block."""
    if fenced:
        block = f"{FENCE}python\n{args}\n{FENCE}"
        return block if result is None else block + splice_text(result, fenced=True)
    if result is None:
        return f"[{name}({args})]"
    return f"[{name}({args}) {ARROW} {safe_result(result)}]"


def splice_text(result: str, *, fenced: bool = False) -> str:
    """What the engine appends after a call's closing `)` (fenced: after its closing fence)."""
    if fenced:
        # The line break after the closing fence is the engine's: left to the model, a closing
        # "```" token was seen continued by a fourth backtick.
        return f"{OUTPUT_OPENER}{safe_output(result)}{_FENCE_CLOSE}\n"
    return f" {ARROW} {safe_result(result)}]"


def safe_output(result: str) -> str:
    """Make an output block unable to end early: no line of it may be a fence."""
    return result.strip("\n").replace(FENCE, "` ` `")


def safe_result(result: str) -> str:
    """Make a result unable to end its call early: unbalanced brackets become parentheses."""
    depth = 0
    for char in result:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            break
    if depth == 0:
        return result
    return result.replace("[", "(").replace("]", ")")


def quote(argument: str) -> str:
    """A double-quoted string literal for `argument`, the inverse of `unquote`."""
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + '"'


def unquote(literal: str) -> str:
    """The value of a single- or double-quoted literal with backslash escapes."""
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            i += 1
            out.append(_ESCAPES.get(body[i], body[i]))
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _is_one_string_literal(text: str) -> bool:
    if len(text) < 2 or text[0] not in "\"'" or text[-1] != text[0]:
        return False
    escaped = False
    for char in text[1:-1]:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == text[0]:
            return False
    return not escaped


# A result that can stand for a value in a sentence ("has [Calculator(9+4) → 13] kids"): a
# number. A word ("done", a search snippet) in its place would read as noise more often than not.
_NUMBER = re.compile(r"[-+]?(\d[\d,]*(\.\d+)?|\.\d+)([eE][-+]?\d+)?%?")
_SENTENCE_ENDS = ".!?\n"


def strip_calls(text: str, fence: str | None = None, *, inline: bool = True) -> str:
    """The reader's answer: the text with every call (and malformed call) removed.

    A call the model wrote in place of a value keeps its result there: one whose result is a
    number, that stands inside a sentence and is not followed by a number of the model's own
    (Toolformer's `[Calculator(2+2) → 4] 4`). Everything else goes, with the gap closed.
    """
    segments = parse(text, fence, inline=inline)
    parts: list[str] = []
    removed = False
    for i, segment in enumerate(segments):
        if not isinstance(segment, str):
            value = _inline_value(segment, "".join(parts), _text_after(segments, i))
            if value is None:
                removed = True
                continue
            segment = value
        if removed and parts:
            # Close the gap the call leaves without touching the rest of the text's spacing.
            before, segment = "".join(parts), segment.lstrip(" ")
            if not before.rstrip(" ").endswith("\n"):  # else the call began its line: keep indent
                before = before.rstrip(" ")
                tight = not segment or segment[0] in ".,;:!?)\n" or before.endswith("(")
                before = before if tight else before + " "
            parts = [before]
        parts.append(segment)
        removed = False
    return "".join(parts).strip()


def _text_after(segments: list[Segment], index: int) -> str:
    following = segments[index + 1] if index + 1 < len(segments) else ""
    return following if isinstance(following, str) else ""


def _inline_value(segment: Call | Malformed, before: str, after: str) -> str | None:
    """The result a call stands for in its sentence, or None when the call is to go."""
    if not isinstance(segment, Call) or segment.result is None or segment.fenced:
        return None
    value = segment.result.strip()
    if not _NUMBER.fullmatch(value):  # a word, a passage, an error: not a value
        return None
    lead = before.rstrip(" ")
    if not lead or lead[-1] in _SENTENCE_ENDS:
        return None  # the call opens a sentence: a note before it, not a part of it
    # Only the first character after the call decides, so a stream can settle it at once.
    rest = after.lstrip(" ")
    if rest and (rest[0].isdigit() or rest[0] in "$-+" or rest[0] == value[0]):
        return None  # the model wrote the value itself
    return value
