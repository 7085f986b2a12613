"""What both evals share: reading the data, answering questions a few at a time, a progress line.

Questions run concurrently through asyncio (`workers` at once); their model steps interleave on
the engine's one model thread, so more workers overlap tool calls and browsing with decoding
rather than decode faster, and each answer's latency includes the time it waited for the others.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from agent_server.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def read_jsonl(path: Path, limit: int = 0, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The records of a JSONL file (the first `limit`, 0: all), each checked for `required` keys;
    `ConfigError` saying which line is wrong."""
    records = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{number}: not JSON: {exc}") from exc
                missing = [k for k in required if not isinstance(record, dict) or k not in record]
                if missing:
                    raise ConfigError(f"{path}:{number}: a record without {', '.join(missing)}")
                records.append(record)
                if limit and len(records) >= limit:
                    break
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not records:
        raise ConfigError(f"{path} holds no records")
    return records


class Progress:
    """`label  12/30 [#####.....] 40% 1:02 elapsed, ~1:33 left` on stderr, rewritten in place on
    a terminal; in a log (not a terminal) a line at every tenth of the way."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty()
        self._started = time.monotonic()
        self._step = max(1, total // 10)

    def advance(self) -> None:
        self.done += 1
        if self._live or self.done % self._step == 0 or self.done == self.total:
            end = "\n" if not self._live or self.done == self.total else ""
            self._stream.write(("\r" if self._live else "") + self.line() + end)
            self._stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        part = self.done / self.total if self.total else 1.0
        bar = "#" * round(20 * part)
        left = f", ~{_clock(elapsed / part - elapsed)} left" if 0 < part < 1 else ""
        return (
            f"{self.label} {self.done:>{len(str(self.total))}}/{self.total} [{bar:.<20}] "
            f"{100 * part:3.0f}% {_clock(elapsed)} elapsed{left}"
        )


async def run_all(
    inputs: Sequence[T],
    answer: Callable[[T], Awaitable[R]],
    workers: int = 1,
    progress: Progress | None = None,
) -> list[R]:
    """`answer` for every input, at most `workers` at a time; results in the inputs' order."""
    gate = asyncio.Semaphore(max(1, workers))

    async def one(item: T) -> R:
        async with gate:
            result = await answer(item)
        if progress is not None:
            progress.advance()
        return result

    return list(await asyncio.gather(*(one(item) for item in inputs)))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Journal:
    """The items of a run as they finish, one JSON line each, so that a run of hours that stops
    (a crash, a reboot, Ctrl-C) goes on where it was: `--resume` answers only what is missing.

    The first line is the run's header (model, data, settings); a journal whose header differs
    from the run's is never resumed, so items answered under other settings are not mixed in.
    Each line after it is an item, with the commit of the code that answered it.
    """

    def __init__(self, path: Path, header: dict[str, Any], resume: bool, commit: str) -> None:
        self.path = path
        self.header = header
        self.commit = commit
        self.resumed: dict[tuple[str, str], dict[str, Any]] = {}
        if resume and path.exists():
            self.resumed = self._read()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.resumed:
            path.write_text(json.dumps({"journal": header}) + "\n", encoding="utf-8")
        self._handle = path.open("a", encoding="utf-8")
        if self.resumed and not path.read_bytes().endswith(b"\n"):
            self._handle.write("\n")  # after the line being written when the run stopped

    def commits(self) -> list[str]:
        """The commits whose code answered the resumed items and the new ones, oldest first."""
        return list(dict.fromkeys([*(i["commit"] for i in self.resumed.values()), self.commit]))

    def _read(self) -> dict[tuple[str, str], dict[str, Any]]:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0])["journal"] if lines else None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path}: not a journal of this eval ({exc})") from exc
        if header != self.header:
            changed = sorted(
                k
                for k in {*self.header, *(header or {})}
                if (header or {}).get(k) != self.header.get(k)
            )
            raise ConfigError(
                f"{self.path} was written by a run with other {', '.join(changed)}: "
                "run without --resume to start again"
            )
        items: dict[tuple[str, str], dict[str, Any]] = {}
        for line in lines[1:]:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written when the run stopped: answered again
            if isinstance(item, dict) and {"mode", "id", "commit"} <= item.keys():
                items[(str(item["mode"]), str(item["id"]))] = item
        return items

    def add(self, item: dict[str, Any]) -> None:
        self._handle.write(json.dumps({**item, "commit": self.commit}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
