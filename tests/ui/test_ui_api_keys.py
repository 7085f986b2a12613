"""With API keys set (`AGENT_API_KEYS`), the page loads, asks for a key at the first refusal,
says plainly when a key is wrong, and sends the right one on every request afterwards."""

from __future__ import annotations

from chat_page import ask
from playwright.sync_api import Page, expect

from agent_server.settings import Settings


def test_the_page_asks_for_a_key_refuses_a_wrong_one_and_works_with_the_right_one(
    page: Page, start_app
):
    app = start_app(Settings(tools=[], api_keys=["sekrit"]))
    app.backend.queue("Answered with the key.")
    page.goto(app.url)
    form = page.locator("#key-form")
    expect(form).to_be_visible()  # the conversation list was refused: the page asks
    expect(page.locator("#key-note")).to_have_text("This server needs an API key.")

    page.get_by_label("API key").fill("wrong")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-note")).to_have_text("That API key was refused. Enter the right one.")
    expect(form).to_be_visible()

    page.get_by_label("API key").fill("sekrit")
    page.get_by_role("button", name="Use this key").click()
    expect(form).to_be_hidden()
    ask(page, "Does the key work?")
    expect(page.locator(".answer .body")).to_have_text("Answered with the key.")
    expect(page.locator("#conversations li")).to_have_count(1)  # the list loads with the key
    # The key is kept for the tab only, and never put in the address.
    assert page.evaluate("sessionStorage.getItem('agent-server.api-key')") == "sekrit"
    assert "sekrit" not in page.url
