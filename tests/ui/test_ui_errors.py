"""What the page says when the service can't answer: busy (429), down, loading (503), timed
out mid-answer; each time in plain words, with a Retry that asks again."""

from __future__ import annotations

import threading

from chat_page import ask
from doubles import SlowTool
from playwright.sync_api import Page, expect

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.settings import Settings


def test_a_busy_server_says_so_and_retry_asks_again(page: Page, start_app):
    app = start_app(Settings(tools=[], max_active_answers=1, max_queued_answers=0))
    app.backend.queue(['[Slow("1.0")', " done."], "Answered on retry.")
    page.goto(app.url)
    body = {"question": "q", "stream": True}
    with app.client.stream("POST", "/v1/ask", json=body) as busy:
        lines = busy.iter_lines()
        assert next(lines) == "event: token"  # this answer holds the only slot
        ask(page, "Are you busy?")
        problem = page.get_by_role("alert")
        expect(problem).to_contain_text("The server is busy with other answers (429).")
        expect(problem).to_contain_text("Try again in")
        list(lines)  # the slot is free again
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".answer .body")).to_have_text("Answered on retry.")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.locator(".question")).to_have_count(1)  # the failed try made way for the retry


def test_a_server_that_is_down_is_unreachable_until_it_is_back(page: Page, start_app):
    first = start_app()
    page.goto(first.url)
    expect(page.locator("#health")).to_have_text("scripted")
    first.stop()

    ask(page, "Anyone there?")
    expect(page.get_by_role("alert")).to_contain_text("The server is unreachable")
    expect(page.locator("#health")).to_have_text("Server unreachable")

    backend = ScriptedBackend(["Back again."])
    start_app(backend=backend, port=first.port)
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".answer .body")).to_have_text("Back again.")
    expect(page.locator("#health")).to_have_text("scripted")


def test_a_loading_model_is_shown_and_retry_works_once_it_is_ready(page: Page, start_app):
    gate = threading.Event()
    backend = ScriptedBackend(["Ready now."])

    def slow_factory(_: Settings) -> Engine:
        gate.wait(10)
        return Engine(backend, {}, Prompt("chat"))

    app = start_app(factory=slow_factory, ready=False)
    page.goto(app.url)
    expect(page.locator("#health")).to_have_text("Model loading…")
    ask(page, "Hello?")
    expect(page.get_by_role("alert")).to_contain_text("The model is not ready yet (503).")
    gate.set()
    expect(page.locator("#health")).to_have_text("scripted")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".answer .body")).to_have_text("Ready now.")


def test_an_answer_over_the_time_limit_is_an_error_event_with_retry(page: Page, start_app):
    app = start_app(Settings(tools=[], request_timeout_s=0.5), tools=[SlowTool()])
    app.backend.queue(['Wait [Slow("3")', " for it."], "Quick this time.")
    page.goto(app.url)
    ask(page, "Slowly")
    problem = page.get_by_role("alert")
    expect(problem).to_contain_text("The answer could not be finished:")
    expect(page.locator(".card")).to_have_attribute("data-state", "error")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".answer .body")).to_have_text("Quick this time.")
