"""Fixtures for the document, search and retrieval tests: the real embedder and small corpora.

The embedder is all-MiniLM-L6-v2 from its installed package, loaded once per session; the
corpora are written into tmp_path in every format the loaders read, a real PDF included.
Helpers reach the tests as fixtures: a module named `conftest` cannot be imported reliably when
the test folders hold several of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tools.embedder import Embedder

# Six short documents on unrelated subjects, so a query has one right answer.
TOPICS = {
    "volcano.txt": "Hekla is one of the most active volcanoes in Iceland. Its eruption in 1104 "
    "buried farms under ash, and medieval writers called it the gateway to hell.",
    "bread.md": "# Sourdough baking\n\nA sourdough starter is a culture of wild yeast and lactic "
    "acid bacteria. Feed the starter with flour and water every day before baking the loaf.",
    "clinic.html": "<html><head><title>Clinic notes</title><style>p {color: red}</style></head>"
    "<body><h1>Visit</h1><p>The physician prescribed medication to treat the patient's "
    "hypertension.</p><script>trackVisit('xylophone');</script></body></html>",
    "nested/chess.txt": "The Sicilian Defence is a chess opening that begins with the moves "
    "e4 c5. It is the most popular reply to the king's pawn opening among grandmasters.",
    "nested/deeper/rivers.md": "The Amazon river carries more water than any other river on "
    "Earth, discharging about 209,000 cubic metres per second into the Atlantic Ocean.",
}
PDF_PAGES = [
    "The quarterly report shows that revenue of the pump division grew by twelve percent.",
    "Warranty: every pump sold after March carries a five year warranty on the motor.",
]


def write_pdf(path: Path, pages: list[str], title: str | None = "Pump division report") -> None:
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))


def write_corpus(root: Path) -> Path:
    """A folder of .txt, .md, .html and .pdf files, some nested; returns `root`."""
    for name, text in TOPICS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    write_pdf(root / "report.pdf", PDF_PAGES)
    return root


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder with `TOPICS` (text, Markdown, HTML, nested) and a two-page PDF, `report.pdf`."""
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def topics() -> dict[str, str]:
    return dict(TOPICS)


@pytest.fixture
def pdf_pages() -> list[str]:
    return list(PDF_PAGES)


@pytest.fixture
def make_pdf() -> Callable[..., None]:
    return write_pdf


@pytest.fixture
def make_jsonl() -> Callable[[Path, list[dict[str, object]]], Path]:
    return write_jsonl
