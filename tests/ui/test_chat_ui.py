"""The chat page in headless Chromium against the real service: asking, tool cards, safety,
conversations, stopping, keyboard, documents. The model is the scripted backend.
"""

from __future__ import annotations

import re
from pathlib import Path

from chat_page import answered, ask
from doubles import BrokenTool, EchoTool, PrintingPython, RefusingTool, SlowTool
from playwright.sync_api import Page, expect

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine, EngineConfig
from agent_server.core.prompts import Prompt
from agent_server.settings import Settings
from tools.embedder import Embedder
from tools.retrieval import Retrieve


def test_an_answer_streams_in_with_a_card_per_tool_call(page: Page, app):
    app.backend.queue(
        ['Backwards it reads [Echo("olleh")', ", and then [Slow(1.5)", " we are done."]
    )
    page.goto(app.url)
    expect(page.locator("#health")).to_have_text("scripted")
    ask(page, "Say hello backwards")

    answer = page.locator(".answer").last
    cards = answer.locator(".card")
    # While the slow tool runs, the text so far is on the page, without the call syntax.
    expect(cards.nth(1)).to_have_attribute("data-state", "running")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(answer.locator(".body")).to_contain_text("Backwards it reads, and then")
    expect(answer.locator(".body")).not_to_contain_text("[Echo")

    expect(cards.nth(1)).to_have_attribute("data-state", "ok")
    expect(answer.locator(".body")).to_have_text("Backwards it reads, and then we are done.")
    echo = cards.nth(0)
    expect(echo.locator(".tool")).to_have_text("Echo")
    expect(echo.locator(".argument")).to_have_text("olleh")
    expect(echo.locator(".state")).to_have_text("ok")
    expect(echo.locator(".time")).to_have_text(re.compile(r"^(<1 ms|\d+ ms)$"))
    expect(cards.nth(1).locator(".time")).to_have_text(re.compile(r"^1\.\d s$"))
    # Collapsed until asked: then the result shows (the argument reversed).
    expect(echo.locator(".outcome")).not_to_be_visible()
    echo.locator("summary").click()
    expect(echo.locator(".outcome")).to_be_visible()
    expect(echo.locator(".outcome")).to_have_text("hello")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Answer complete.")


def test_failing_tools_show_their_errors(page: Page, start_app):
    app = start_app(tools=[RefusingTool(), BrokenTool()])
    app.backend.queue(['Trying [Refuse("x")', " then [Broken(y)", " no luck."])
    page.goto(app.url)
    ask(page, "Try the tools")
    cards = page.locator(".card")
    expect(cards).to_have_count(2)
    for card, error in zip(
        (cards.nth(0), cards.nth(1)),
        ("cannot handle 'x'", "Broken failed internally (RuntimeError)"),
        strict=True,
    ):
        expect(card).to_have_attribute("data-state", "error")
        expect(card.locator(".state")).to_have_text("error")
        card.locator("summary").click()
        expect(card.locator(".outcome-label")).to_have_text("Error")
        expect(card.locator(".outcome")).to_have_text(error)
    expect(page.locator(".answer .body")).to_have_text("Trying then no luck.")


HOSTILE = (
    'Look: <script>window.pwned=1</script> and <img src=x onerror="window.pwned=2"> '
    "and [click](javascript:window.pwned=3) and **bold** and `<b>code</b>`"
)


def test_a_hostile_answer_renders_as_text_live_and_after_a_reload(page: Page, app):
    app.backend.queue(HOSTILE)
    page.goto(app.url)
    ask(page, "Be hostile")
    answered(page)
    body = page.locator(".answer .body")
    for _ in range(2):  # as it streamed in, then as stored
        expect(body).to_contain_text("<script>window.pwned=1</script>")
        expect(body).to_contain_text('<img src=x onerror="window.pwned=2">')
        expect(body.locator("script, img, b")).to_have_count(0)
        expect(body.locator("strong")).to_have_text("bold")
        expect(body.locator("code")).to_have_text("<b>code</b>")
        expect(body.locator("a")).to_have_count(0)  # a javascript: link stays its label
        expect(body).to_contain_text("and click and")
        assert page.evaluate("typeof window.pwned") == "undefined"
        page.reload()
        page.locator(".conversation", has_text="Be hostile").click()
    page.get_by_role("button", name="Copy the answer").click()
    expect(page.get_by_role("button", name="Copy the answer")).to_have_text("Copied")


def test_markdown_renders_lists_code_and_only_web_links(page: Page, app):
    app.backend.queue(
        "## Steps\n- first *item*\n- second, see https://example.org/a.\n"
        "1. one\n2. [docs](https://example.org/docs)\n```\nx = [1, 2]\n```"
    )
    page.goto(app.url)
    ask(page, "Format something")
    body = page.locator(".answer .body")
    expect(body.locator("h4")).to_have_text("Steps")
    expect(body.locator("ul > li")).to_have_count(2)
    expect(body.locator("ul em")).to_have_text("item")
    expect(body.locator("ol > li")).to_have_count(2)
    expect(body.locator("pre code")).to_have_text("x = [1, 2]")
    links = body.locator("a")
    expect(links).to_have_count(2)
    for link, href in zip(
        (links.nth(0), links.nth(1)),
        ("https://example.org/a", "https://example.org/docs"),
        strict=True,
    ):
        expect(link).to_have_attribute("href", href)
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        expect(link).to_have_attribute("target", "_blank")


def test_conversations_are_kept_reopened_continued_and_deleted(page: Page, app):
    app.backend.queue(['It is [Echo("olleh")', " hello."], "Still hello.")
    page.goto(app.url)
    expect(page.locator("#conversations-note")).to_have_text("No conversations yet.")
    ask(page, "Say hello")
    expect(page.locator(".answer .body")).to_have_text("It is hello.")
    answered(page)

    page.reload()
    conversation = page.locator(".conversation", has_text="Say hello")
    expect(conversation).to_be_visible()
    expect(page.locator(".answer")).to_have_count(0)
    conversation.click()
    expect(conversation).to_have_attribute("aria-current", "true")
    expect(page.locator(".question")).to_have_text("Say hello")
    expect(page.locator(".answer .body")).to_have_text("It is hello.")
    card = page.locator(".card")
    expect(card.locator(".tool")).to_have_text("Echo")
    card.locator("summary").click()
    expect(card.locator(".outcome")).to_have_text("hello")

    ask(page, "Again?")  # a follow-up in the reopened conversation
    expect(page.locator(".answer .body").last).to_have_text("Still hello.")
    answered(page)
    (stored,) = app.client.get("/v1/conversations").json()
    assert stored["turns"] == 2
    assert "Say hello" in app.backend.prompts[-1]  # the first turn was the context

    page.get_by_role("button", name="Delete conversation: Say hello").click()  # confirmed
    expect(page.locator(".conversation")).to_have_count(0)
    expect(page.locator(".answer")).to_have_count(0)
    assert app.client.get("/v1/conversations").json() == []
    page.get_by_role("button", name="New chat").click()
    expect(page.locator("#welcome")).to_be_visible()


def test_stop_ends_a_slow_answer_and_keeps_what_was_written(page: Page, app):
    app.backend.queue(['Thinking [Slow("5")', " never written."])
    page.goto(app.url)
    ask(page, "Take your time")
    expect(page.locator(".card")).to_have_attribute("data-state", "running")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".answer .note")).to_have_text("Stopped.")
    expect(page.locator(".card .state")).to_have_text("stopped")
    expect(page.locator(".answer .body")).to_contain_text("Thinking")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_label("Your question")).to_be_focused()
    assert app.client.get("/v1/conversations").json() == []  # a stopped answer is not kept


def test_the_keyboard_alone_asks_and_every_control_is_labelled(page: Page, app):
    app.backend.queue("Two lines read.")
    page.goto(app.url)
    question = page.get_by_label("Your question")
    expect(question).to_be_focused()
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    page.keyboard.press("Enter")
    expect(page.locator(".question")).to_have_text("line one\nline two")
    expect(page.locator(".answer .body")).to_have_text("Two lines read.")
    answered(page)
    (conversation,) = app.client.get("/v1/conversations").json()
    turn = app.client.get(f"/v1/conversations/{conversation['id']}").json()["turns"][0]
    assert turn["question"] == "line one\nline two"
    expect(question).to_have_value("")
    expect(question).to_be_focused()

    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("button, input, textarea")].filter((el) => {
            const label = el.getAttribute("aria-label") || el.textContent.trim() ||
                [...(el.labels || [])].map((l) => l.textContent.trim()).join("");
            return !label;
        }).map((el) => el.outerHTML)"""
    )
    assert unlabelled == []
    # Tab goes on from the question to the answer's Copy button, then back to the text box.
    page.locator(".question").click()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Copy the answer")).to_be_focused()
    page.keyboard.press("Tab")
    expect(question).to_be_focused()


def test_documents_are_listed_uploaded_and_deleted(page: Page, start_app, tmp_path: Path):
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "notes.md").write_text("# Notes\nThe boiler was serviced in May.\n")
    app = start_app(Settings(tools=[], documents=documents))
    page.goto(app.url)
    listed = page.locator("#documents li")
    expect(listed).to_have_count(1)
    expect(listed.first).to_contain_text("notes.md")

    upload = page.get_by_label("Upload a document")
    upload.set_input_files(
        files=[{"name": "pump.txt", "mimeType": "text/plain", "buffer": b"Warranty: 24 months."}]
    )
    expect(page.locator("#documents-note")).to_have_text("Uploaded pump.txt; it is being indexed.")
    expect(listed).to_have_count(2)
    expect(listed.nth(1)).to_contain_text("pump.txt")
    assert (documents / "pump.txt").read_bytes() == b"Warranty: 24 months."

    upload.set_input_files(files=[{"name": "run.sh", "mimeType": "text/x-sh", "buffer": b"x"}])
    expect(page.locator("#documents-note")).to_contain_text("run.sh was not uploaded")
    expect(page.locator("#documents-note")).to_contain_text("(400)")

    page.get_by_role("button", name="Delete document: pump.txt").click()  # confirmed
    expect(listed).to_have_count(1)
    assert not (documents / "pump.txt").exists()


def test_documents_given_as_one_file_turn_uploads_off_and_say_why(page: Page, start_app, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"doc_id": "a", "title": "A", "text": "Some text."}\n')
    app = start_app(Settings(tools=[], documents=corpus))
    page.goto(app.url)
    expect(page.locator("#documents-note")).to_contain_text("AGENT_DOCUMENTS names a file")
    expect(page.get_by_label("Upload a document")).to_be_disabled()


def test_on_a_fresh_data_folder_an_upload_is_indexed_and_retrieve_answers_from_it(
    page: Page, start_app, tmp_path: Path
):
    # The default set-up: no AGENT_DOCUMENTS, so uploads go to data/documents; Retrieve is the
    # real one (real embedder), the model scripted to call it.
    settings = Settings(tools=[], data_dir=tmp_path / "data", index_dir=tmp_path / "index")
    backend = ScriptedBackend()

    def engine(s: Settings) -> Engine:
        retrieve = Retrieve(s.documents_path, tmp_path / "index", embedder=Embedder())
        return Engine(backend, {"Retrieve": retrieve}, Prompt("chat"))

    app = start_app(settings, backend=backend, factory=engine)
    page.goto(app.url)
    expect(page.locator("#documents-note")).to_have_text("No documents yet.")
    note = b"# Boiler\n\nThe Quillfeather boiler's warranty runs to 2031.\n"
    page.get_by_label("Upload a document").set_input_files(
        files=[{"name": "boiler.md", "mimeType": "text/markdown", "buffer": note}]
    )
    item = page.locator("#documents li", has_text="boiler.md")
    expect(item.locator(".document-status")).to_have_text("ready", timeout=60_000)
    assert (tmp_path / "data" / "documents" / "boiler.md").read_bytes() == note

    backend.queue(['[Retrieve("boiler warranty")', " The warranty runs to 2031."])
    ask(page, "When does the boiler's warranty end?")
    card = page.locator(".answer").last.locator(".card")
    expect(card.locator(".tool")).to_have_text("Retrieve")
    expect(card.locator(".state")).to_have_text("ok")
    card.locator("summary").click()
    expect(card.locator(".outcome")).to_contain_text("boiler's warranty runs to 2031")
    expect(card.locator(".outcome")).to_contain_text("doc://boiler.md")


def test_escape_stops_an_answer_from_the_text_box(page: Page, app):
    app.backend.queue(['Thinking [Slow("5")', " never written."])
    page.goto(app.url)
    ask(page, "Take your time")
    expect(page.locator(".card")).to_have_attribute("data-state", "running")
    expect(page.get_by_label("Your question")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator(".answer .note")).to_have_text("Stopped.")


def test_the_theme_follows_the_system_until_toggled_and_is_remembered(new_page, app):
    page = new_page(color_scheme="dark")
    page.goto(app.url)
    toggle = page.get_by_role("button", name="Dark theme")
    background = "() => getComputedStyle(document.body).backgroundColor"
    dark = page.evaluate(background)
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    light = page.evaluate(background)
    assert light == "rgb(255, 255, 255)" and dark != light
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert page.evaluate(background) == light


def test_several_answers_show_the_first_as_a_draft_until_the_vote(page: Page, start_app):
    """Samples (here two, the service's default) are written side by side and the answer comes
    after their vote: meanwhile the page shows the first as a draft, not an empty answer."""
    backend = ScriptedBackend()
    tools = {t.name: t for t in (EchoTool(), SlowTool())}
    app = start_app(
        backend=backend,
        factory=lambda _: Engine(backend, tools, Prompt("chat"), EngineConfig(samples=2)),
    )
    backend.queue(["Working it out [Slow(1.5)", " so 5."], "It is 5.")
    page.goto(app.url)
    ask(page, "How many?")
    answer = page.locator(".answer").last
    body = answer.locator(".body")
    expect(body).to_have_class(re.compile(r"\bdraft\b"))
    expect(body).to_contain_text("Working it out")
    expect(answer.locator(".card").first).to_have_attribute("data-state", "running")
    answered(page)
    expect(body).not_to_have_class(re.compile(r"\bdraft\b"))
    expect(body).to_have_text(re.compile(r"^(Working it out so 5\.|It is 5\.)$"))
    expect(answer.locator(".answer-footer")).to_contain_text("votes: 5 ×2")


def test_a_consensus_names_the_strategy_that_made_each_call(page: Page, start_app):
    backend = ScriptedBackend()
    tools = {t.name: t for t in (EchoTool(), PrintingPython())}
    app = start_app(backend=backend, factory=lambda _: Engine(backend, tools, Prompt("chat")))
    backend.queue(
        ["```python\nprint(5)\n```", "So \\boxed{5}."], ["```python\nprint(5)\n```", "It is 5."]
    )
    page.goto(app.url)
    page.select_option("#strategy", "consensus")
    ask(page, "How many?")
    answered(page)
    answer = page.locator(".answer").last
    tools_shown = answer.locator(".card .tool")
    expect(tools_shown).to_have_count(2)
    assert sorted(tools_shown.all_text_contents()) == ["Python · program", "Python · tir"]
    expect(answer.locator(".answer-footer")).to_contain_text("consensus · votes: 5 ×2")


def test_the_welcome_offers_example_questions_that_ask_when_clicked(page: Page, app):
    app.backend.queue(["Jane Austen wrote it."])
    page.goto(app.url)
    examples = page.locator("#welcome .example")
    expect(examples).to_have_count(3)
    expect(examples.nth(2)).to_have_text("Who wrote Pride and Prejudice?")
    examples.nth(2).click()
    answered(page)
    expect(page.locator(".question").last).to_have_text("Who wrote Pride and Prejudice?")
    expect(page.locator(".answer .body").last).to_have_text("Jane Austen wrote it.")
    expect(page.locator("#welcome")).to_be_hidden()
