"""The reader's answer while the model is still writing: its text without call syntax.

The engine feeds it everything the answer's text receives (the model's tokens as they are
streamed, and each spliced result) and sends what it returns as `AnswerEvent`s, so every client
(the OpenAI stream, the native stream, the UI) shows the same reader's answer as it grows, and
the deltas add up to `FinalEvent.answer` (`strip_calls` of the text).
"""

from __future__ import annotations

import logging

from agent_server.core.grammar import CallScanner, Phase, strip_calls

log = logging.getLogger(__name__)


class AnswerStream:
    """The reader's answer as text streams in: `strip_calls` of the text so far, sent as soon
    as no later text can change it.

    Text is held back from a `[` that may open a call until the call is over or turns out to be
    text and the first character after it is known (it decides whether the call's result stands
    in the sentence), and white space at the end until something follows it (the call that
    follows may take it). Between calls text passes straight through; the text is re-read with
    `strip_calls` only at a call, so a long answer costs linear time, not quadratic.
    """

    def __init__(self, fence: str | None = None, inline: bool = True) -> None:
        self._fence, self._inline = fence, inline  # as for `calls.CallScanner`
        self._scanner = CallScanner(fence, inline=inline)
        self._chars: list[str] = []
        self._safe = 0  # the text before this cannot change how it reads
        self._segments = 0  # scanner segments looked at
        self._last_call_end = 0
        self._settled = True  # the text after the last call has begun, so its spacing is known
        self._sent = ""
        self._held = ""  # white space at the end of the answer so far, sent once text follows

    def add(self, text: str) -> str:
        """Feed text as generated; return the answer text that is now certain."""
        before = self._safe
        for char in text:
            self._scanner.feed(char)
            self._chars.append(char)
            if self._scanner.phase is Phase.TEXT:
                self._safe = len(self._chars)
        segments = self._scanner.segments[self._segments :]
        self._segments += len(segments)
        calls = [s for s in segments if not isinstance(s, str)]  # calls and malformed calls
        if calls:
            self._last_call_end, self._settled = calls[-1].end, False
        if self._settled:
            return self._pass("".join(self._chars[before : self._safe]))
        if self._safe == before and not calls:
            return ""  # nothing new to read (a call is being written)
        return self._reread()

    def finish(self, answer: str) -> str:
        """The rest of the final answer (the engine's `FinalEvent.answer`)."""
        if not answer.startswith(self._sent):  # pragma: no cover - strip_calls reads prefixes alike
            log.warning("streamed content %r is not a prefix of the answer", self._sent)
            return ""
        rest, self._sent = answer[len(self._sent) :], answer
        return rest

    def _pass(self, text: str) -> str:
        out = self._held + text
        if not self._sent:
            out = out.lstrip()
        body = out.rstrip()
        self._held = out[len(body) :]
        self._sent += body
        return body

    def _reread(self) -> str:
        safe = "".join(self._chars[: self._safe])
        if not safe[self._last_call_end :].lstrip(" "):
            return ""  # whether a call stands for its result depends on what follows it
        answer = strip_calls(safe, self._fence, inline=self._inline)
        if not answer.startswith(self._sent):  # pragma: no cover - as in `finish`
            return ""
        delta, self._sent = answer[len(self._sent) :], answer
        # The text after the call has begun; from here on it is appended as it comes. What
        # `strip_calls` keeps of its trailing white space shows behind a sentinel letter.
        self._settled = True
        tail = strip_calls(safe + "x", self._fence, inline=self._inline)[len(answer) : -1]
        self._held = tail if not tail.strip() else ""
        return delta
