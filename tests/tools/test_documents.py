"""Tests for reading documents (JSONL, text, Markdown, HTML, PDF, folders) and splitting them."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.documents import (
    Document,
    DocumentError,
    corpus_files,
    corpus_fingerprint,
    load_documents,
    load_file,
    load_passages,
    save_passages,
    split_passages,
)


def by_id(path: Path) -> dict[str, Document]:
    return {d.doc_id: d for d in load_documents(path).documents}


def test_a_folder_is_read_recursively_with_ids_titles_and_sources(
    corpus: Path, topics: dict[str, str]
) -> None:
    (corpus / ".hidden").mkdir()
    (corpus / ".hidden" / "secret.txt").write_text("not a document")
    (corpus / "photo.jpg").write_bytes(b"\xff\xd8")
    loaded = load_documents(corpus)
    docs = {d.doc_id: d for d in loaded.documents}
    assert sorted(docs) == sorted([*topics, "report.pdf"])
    assert loaded.skipped == ()
    assert docs["volcano.txt"].title == "volcano"  # a text file's title is its stem
    assert docs["bread.md"].title == "Sourdough baking"
    assert docs["clinic.html"].title == "Clinic notes"
    assert docs["report.pdf"].title == "Pump division report"
    assert docs["nested/deeper/rivers.md"].source == str(corpus / "nested/deeper/rivers.md")
    assert docs["volcano.txt"].text == topics["volcano.txt"]


def test_html_text_drops_scripts_styles_and_comments_and_breaks_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.htm"
    page.write_text(
        "<html><head><title> Spaced   title </title><style>.x{}</style></head><body>"
        "<h1>Heading</h1><p>one <b>bold</b></p><p>two</p><!-- hidden -->after<br>line"
        "<script>alert('no')</script><ul><li>a</li><li>b</li></ul></body></html>"
    )
    doc = load_file(page, "page")
    assert doc.title == "Spaced title"
    assert doc.text == "Heading\none bold\ntwo\nafter\nline\na\nb"


def test_html_title_falls_back_to_the_first_heading_then_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text("<body><h1>First</h1><h1>Second</h1><p>x</p></body>")
    (tmp_path / "b.html").write_text("<body><p>no heading</p></body>")
    assert load_file(tmp_path / "a.html", "a").title == "First"
    assert load_file(tmp_path / "b.html", "b").title == "b"


def test_html_in_a_declared_legacy_charset(tmp_path: Path) -> None:
    page = tmp_path / "old.html"
    page.write_bytes('<meta charset="iso-8859-1"><p>café</p>'.encode("latin-1"))
    assert load_file(page, "old").text == "café"


def test_markdown_title_is_the_first_top_level_heading(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("intro\n## Sub\n# Main title #\n# Later\n")
    (tmp_path / "b.md").write_text("## only a subheading\n")
    assert load_file(tmp_path / "a.md", "a").title == "Main title"
    assert load_file(tmp_path / "b.md", "b").title == "b"


def test_pdf_text_comes_page_by_page_in_order(
    tmp_path: Path, make_pdf: Callable[..., None], pdf_pages: list[str]
) -> None:
    make_pdf(tmp_path / "r.pdf", pdf_pages, title=None)
    doc = load_file(tmp_path / "r.pdf", "r")
    assert doc.title == "r"  # no metadata title
    assert doc.text.index("revenue") < doc.text.index("Warranty") and "\n\n" in doc.text


def test_unreadable_files_in_a_folder_are_skipped_with_reasons(
    corpus: Path, topics: dict[str, str]
) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (corpus / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (corpus / "empty.md").write_text("   \n")
    loaded = load_documents(corpus)
    reasons = {Path(s.source).name: s.reason for s in loaded.skipped}
    assert set(reasons) == {"broken.pdf", "latin.txt", "empty.md"}
    assert "PDF" in reasons["broken.pdf"]
    assert reasons["latin.txt"].startswith("not UTF-8")
    assert reasons["empty.md"] == "no text"
    assert len(loaded.documents) == len(topics) + 1


def test_a_single_unreadable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"garbage")
    with pytest.raises(DocumentError, match=re.escape(str(broken))):
        load_documents(broken)
    with pytest.raises(DocumentError, match="unsupported file type"):
        load_file(tmp_path / "x.docx", "x")


@pytest.mark.parametrize("setup", ["missing", "empty folder", "only unreadable"])
def test_no_documents_is_an_error(tmp_path: Path, setup: str) -> None:
    target = tmp_path / "docs"
    if setup != "missing":
        target.mkdir()
    if setup == "only unreadable":
        (target / "bad.pdf").write_bytes(b"nope")
    with pytest.raises(DocumentError, match=str(target)):
        load_documents(target)


def test_jsonl_documents_keep_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '\ufeff{"doc_id": "a", "title": "A", "text": "alpha"}\n\n'
        '{"doc_id": "b", "text": "beta"}\n'
        '{"doc_id": "c", "title": "C", "text": "  "}\n'
    )
    docs = by_id(path)
    assert sorted(docs) == ["a", "b"]  # blank lines and empty texts are passed over
    assert (docs["a"].title, docs["b"].title, docs["b"].source) == ("A", "", f"{path}:3")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "expected an object"),
        ('{"title": "t", "text": "x"}', "doc_id must be a non-empty string"),
        ('{"doc_id": 7, "text": "x"}', "doc_id must be a non-empty string"),
        ('{"doc_id": "z"}', "text must be a string"),
        ('{"doc_id": "z", "text": "x", "title": 3}', "title must be a string"),
        ('{"doc_id": "a", "text": "again"}', "doc_id 'a' appears twice"),
    ],
)
def test_a_bad_jsonl_line_is_an_error_naming_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"doc_id": "a", "text": "x"}\n{"doc_id": "b", "text": "y"}\n' + line + "\n")
    with pytest.raises(DocumentError, match=re.escape(f"{path}:3: {message}")):
        load_documents(path)


def test_a_jsonl_line_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"doc_id": "a", "text": "x"}\n{"doc_id": "b", "text": "\xff"}\n')
    with pytest.raises(DocumentError, match=re.escape(f"{path}:2")):
        load_documents(path)


def test_a_short_document_is_one_passage_spanning_its_text() -> None:
    doc = Document("d", "T", "  Just a few words here.  ", "src")
    (passage,) = split_passages([doc], max_words=10, overlap_words=3)
    assert (passage.passage_id, passage.doc_id, passage.title, passage.source) == (
        "d#0",
        "d",
        "T",
        "src",
    )
    assert passage.text == "Just a few words here."
    assert doc.text[passage.start : passage.end] == passage.text
    assert passage.search_text == "T\nJust a few words here."


def test_a_document_just_over_the_limit_becomes_two_halves_not_a_stub() -> None:
    doc = Document("d", "", " ".join(f"w{i}" for i in range(121)), "src")
    sizes = [len(p.text.split()) for p in split_passages([doc], 120, 30)]
    assert sizes == [76, 75]


@given(
    words=st.lists(st.text("ab\u00e9", min_size=1, max_size=4), max_size=300),
    gaps=st.sampled_from([" ", "\n", "  \t"]),
    max_words=st.integers(1, 60),
    overlap_ratio=st.floats(0, 0.9),
)
def test_passages_cover_the_document_in_order_with_the_overlap(
    words: list[str], gaps: str, max_words: int, overlap_ratio: float
) -> None:
    overlap = min(int(max_words * overlap_ratio), max_words - 1)
    doc = Document("d", "", gaps + gaps.join(words), "src")
    passages = split_passages([doc], max_words, overlap)
    if not words:
        assert passages == []
        return
    assert [p.passage_id for p in passages] == [f"d#{n}" for n in range(len(passages))]
    assert all(doc.text[p.start : p.end] == p.text for p in passages)
    assert all(len(p.text.split()) <= max_words for p in passages)
    assert passages[0].text.split()[0] == words[0] and passages[-1].text.split()[-1] == words[-1]
    covered = [w for p in passages for w in p.text.split()]
    assert len(covered) == len(words) + overlap * (len(passages) - 1)  # each seam shares overlap
    for before, after in zip(passages, passages[1:], strict=False):
        assert before.start < after.start and before.end < after.end
        if overlap:
            assert before.text.split()[-overlap:] == after.text.split()[:overlap]


def test_bad_chunking_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap_words"):
        split_passages([], max_words=10, overlap_words=10)
    with pytest.raises(ValueError, match="max_words"):
        split_passages([], max_words=0, overlap_words=0)


def test_passages_survive_a_round_trip_through_jsonl(corpus: Path, tmp_path: Path) -> None:
    passages = split_passages(load_documents(corpus).documents, 12, 4)
    save_passages(passages, tmp_path / "p.jsonl")
    assert load_passages(tmp_path / "p.jsonl") == passages


def test_the_fingerprint_changes_with_the_files_and_only_then(corpus: Path) -> None:
    first = corpus_fingerprint(corpus)
    assert corpus_fingerprint(corpus) == first
    (corpus / "notes.bin").write_bytes(b"ignored: not a document type")
    assert corpus_fingerprint(corpus) == first
    volcano = corpus / "volcano.txt"
    stat = volcano.stat()
    os.utime(volcano, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = corpus_fingerprint(corpus)
    assert touched != first
    (corpus / "new.txt").write_text("a new document")
    assert corpus_fingerprint(corpus) not in (first, touched)
    assert corpus / "new.txt" in corpus_files(corpus)
