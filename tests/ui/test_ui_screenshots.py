"""Screenshots of a conversation with tool cards, desktop and phone width, light and dark.

Saved in `build/screenshots/` on every run. The README's copy, `docs/ui.png`, is rewritten only
with `AGENT_UPDATE_SCREENSHOT=1` (durations differ from run to run, so a plain test run would
leave the work tree changed). The model is scripted; the calculator is the real tool.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from chat_page import DESKTOP, PHONE, SCREENSHOTS, ask, png_size
from doubles import EchoTool
from playwright.sync_api import expect

from agent_server.settings import Settings
from tools.calculator import Calculator

README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "ui.png"


@pytest.fixture
def conversation(start_app, new_page, tmp_path):
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "boiler-service-2024.md").write_text("# Boiler\nServiced in May 2024.\n")
    (documents / "pump-warranty.txt").write_text("Warranty: 24 months.\n")
    app = start_app(Settings(tools=[], documents=documents), tools=[Calculator(), EchoTool()])
    app.backend.queue(
        "Paris is the capital of France.",
        [" [Calculator(168*23.75)", " The cost of 168 tickets is **3990** dollars."],
        [
            "Divide the part by the whole: [Calculator(400/1400)",
            " so:\n- 400 / 1400 ≈ `0.2857`\n- as a percentage, about **28.6 %**.",
        ],
    )
    page = new_page()
    page.goto(app.url)
    ask(page, "What is the capital of France?")
    expect(page.locator(".answer-footer")).to_have_count(1)
    page.get_by_role("button", name="New chat").click()
    for question in (
        "Tickets cost 23.75 dollars each. How much do 168 tickets cost?",
        "What share of 1400 is 400? Show the steps.",
    ):
        ask(page, question)
        expect(page.locator(".answer[aria-busy=false] .answer-footer")).to_have_count(
            page.locator(".answer").count()
        )
    return app


VARIANTS = [
    ("desktop-light", DESKTOP, "light"),
    ("desktop-dark", DESKTOP, "dark"),
    ("phone-light", PHONE, "light"),
    ("phone-dark", PHONE, "dark"),
]


def test_screenshots_desktop_and_phone_light_and_dark(conversation, new_page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, viewport, scheme in VARIANTS:
        page = new_page(viewport, scheme)
        page.goto(conversation.url)
        if viewport is PHONE:
            page.get_by_role("button", name="Show conversations and documents").click()
        page.locator(".conversation", has_text="Tickets cost 23.75").click()
        expect(page.locator("#sidebar")).to_be_visible(visible=viewport is DESKTOP)  # slid away
        cards = page.locator(".card")
        expect(cards).to_have_count(2)
        expect(cards.first.locator(".state")).to_have_text("ok")
        cards.last.locator("summary").click()
        expect(cards.last.locator(".outcome")).to_be_visible()
        page.get_by_label("Your question").blur()

        path = SCREENSHOTS / f"{name}.png"
        path.unlink(missing_ok=True)
        page.screenshot(path=path)
        assert png_size(path) == (viewport["width"], viewport["height"]), name
        page.context.close()

    if os.environ.get("AGENT_UPDATE_SCREENSHOT") == "1":
        README_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(SCREENSHOTS / "desktop-light.png", README_SHOT)
    assert png_size(README_SHOT)[0] == DESKTOP["width"]
    assert README_SHOT.stat().st_size < 300_000
