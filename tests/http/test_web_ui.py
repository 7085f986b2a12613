"""The chat UI's files as the app serves them: at `/`, with a strict policy, never in the API's
way. (The page itself is tested in a real browser in `tests/ui/`.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.http.web_ui import WEB_DIR
from agent_server.settings import Settings


@pytest.fixture
def client():
    app = create_app(Settings(tools=[]), lambda _: Engine(ScriptedBackend(), {}, Prompt("chat")))

    @app.get("/later")  # a route added after the app was made wins over the files too
    async def later() -> dict[str, str]:
        return {"route": "later"}

    with TestClient(app) as client:
        yield client


def test_the_page_is_served_at_the_root_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == (WEB_DIR / "index.html").read_text()
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = client.get("/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "content-security-policy" in script.headers


def test_the_api_wins_and_unknown_paths_stay_json_404s(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "agent-server"
    assert client.get("/v1/conversations").json() == []
    assert client.get("/later").json() == {"route": "later"}
    assert client.post("/healthz").status_code == 405  # a route's other methods: as before
    for method, path in [("GET", "/v1/nope"), ("POST", "/v1/nope"), ("POST", "/"), ("GET", "/x")]:
        response = client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json() == {"detail": "Not Found"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[str] = []
        self.in_script = False
        self.inline: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append(dict(attrs))
            self.in_script = True

    def handle_endtag(self, tag):
        self.in_script = self.in_script and tag != "script"

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.inline.append(data)


def test_the_page_needs_nothing_the_policy_forbids_or_from_elsewhere():
    page = _Page()
    page.feed((WEB_DIR / "index.html").read_text())
    assert page.scripts and not page.inline and not page.handlers  # no inline script at all
    sources = [s["src"] for s in page.scripts]
    assert all(src and not re.match(r"[a-z]+:|//", src) for src in sources)
    for path in WEB_DIR.glob("*.js"):
        code = path.read_text()
        # Model text reaches the page only as text: no HTML parsing, no code from strings.
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in code, (path.name, banned)
        assert not re.search(r"""(from|import\(|fetch\()\s*["'](https?:)?//""", code), path.name
