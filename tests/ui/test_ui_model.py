"""The page with the real default model: a question answered through a Calculator call, the
card's result and the streamed text as the user sees them."""

from __future__ import annotations

import re

import pytest
from chat_page import SCREENSHOTS, ask, png_size
from playwright.sync_api import Page, expect

from agent_server.core.engine import Engine
from tools.calculator import Calculator

pytestmark = [pytest.mark.model, pytest.mark.slow]
# Records the answer's text at each change while it is still being written.
WATCH_STREAMING = """() => {
    window.partials = [];
    new MutationObserver(() => {
        const body = document.querySelector(".answer[aria-busy=true] .body");
        if (body) window.partials.push(body.textContent);
    }).observe(document.getElementById("messages"),
               {subtree: true, childList: true, characterData: true});
}"""


def test_the_real_model_answers_through_a_calculator_card(page: Page, start_app, real_engine):
    def engine(_: object) -> Engine:
        # The session's model, with tools of its own: the app closes this engine, not the model.
        tools = {"Calculator": Calculator()}
        return Engine(real_engine.backend, tools, real_engine.prompt, real_engine.config)

    app = start_app(factory=engine)
    page.goto(app.url)
    expect(page.locator("#health")).to_have_text(real_engine.backend.name)
    page.evaluate(WATCH_STREAMING)
    ask(page, "What is 400 / 1400?")

    answer = page.locator(".answer")
    card = answer.locator(".card").first
    expect(card.locator(".tool")).to_have_text("Calculator", timeout=60_000)
    expect(answer.locator(".answer-footer")).to_be_visible(timeout=120_000)
    expect(card).to_have_attribute("data-state", "ok")
    card.locator("summary").click()
    expect(card.locator(".outcome")).to_have_text(re.compile(r"^0\.2857"))
    expect(answer.locator(".body")).to_contain_text(re.compile(r"0\.28|28\.57?"))
    expect(answer.locator(".body")).not_to_contain_text("[Calculator")
    # The text grew in steps before the answer was complete, and never showed the call syntax.
    partials = [p for p in page.evaluate("window.partials") if p.strip(" …")]
    assert len(set(partials)) >= 2, partials
    assert not any("[" in p for p in partials), partials

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "model-desktop-light.png")
    assert png_size(SCREENSHOTS / "model-desktop-light.png")[0] == 1280
