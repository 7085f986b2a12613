"""What the UI tests share besides fixtures: the browser's settings, the served app, helpers.

(Kept out of `conftest.py`: `import conftest` would find whichever conftest came first.)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from agent_server.backends.scripted import ScriptedBackend

CHROMIUM = Path("/usr/bin/chromium")
# Without the networking flags Chromium reaches out to Google's services at start-up; on a
# closed network those connections are refused and slow the browser down.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@dataclass
class Served:
    """An app under uvicorn on loopback (`serving.serve`), its client and its scripted model."""

    url: str
    client: httpx.Client
    backend: ScriptedBackend
    port: int
    server: Iterator[httpx.Client]

    def stop(self) -> None:
        self.server.close()  # type: ignore[attr-defined]


def ask(page: Page, question: str) -> None:
    """Type a question and send it with Enter, as a user would."""
    page.get_by_label("Your question").fill(question)
    page.get_by_label("Your question").press("Enter")


def answered(page: Page) -> None:
    """Wait until the answer is final, and so stored: its text may be whole before then."""
    expect(page.locator("#status")).to_have_text("Answer complete.")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (its IHDR chunk)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height
