"""A user's documents, read from disk and cut into passages for search and retrieval.

A corpus path is one of
- a JSONL file of `{"doc_id", "title", "text"}` objects (title optional), read strictly: a bad
  line is a `DocumentError` naming the file and the line;
- a single `.txt`, `.md`, `.html`/`.htm` or `.pdf` file (unreadable: `DocumentError`);
- a folder, read recursively (hidden files and folders skipped, so an index may live inside it).
  A file that cannot be read does not stop the rest: it is listed in `Corpus.skipped` with the
  reason, and only a folder with nothing readable at all is an error.

Titles: HTML `<title>` or first `<h1>`; Markdown's first `# ` heading; a PDF's metadata title;
else the file's stem. Document ids: the path relative to the folder (the file name for a single
file). A passage keeps the character offsets of its text in its document's text.

Left out: JSONL files inside folders (a JSONL corpus is given as the path itself), removing
Markdown markup, text encodings other than UTF-8, OCR for scanned PDFs, sentence-aware chunking.

Long (over 300 lines) because reading each supported format and cutting passages share one document
model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import lxml.etree
import lxml.html

SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
_WORD = re.compile(r"\S+")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_HTML_DROPPED = ("script", "style", "noscript", "template")
# Elements that end a line: without a break, `<p>a</p><p>b</p>` would read "ab".
_HTML_BLOCKS = (
    "p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
    "section", "article", "header", "footer", "blockquote", "table", "ul", "ol", "dt", "dd",
)  # fmt: skip

logger = logging.getLogger(__name__)


class DocumentError(ValueError):
    """A corpus that cannot be read; the message names the file (and line) at fault."""


class EmptyCorpus(DocumentError):
    """A folder with no document files in it (yet): nothing to index, nothing wrong."""


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    source: str  # the file it came from, with `:line` for JSONL


@dataclass(frozen=True)
class Passage:
    passage_id: str  # `doc_id#n`
    doc_id: str
    title: str
    text: str  # == the document's text[start:end]
    source: str
    start: int
    end: int

    @property
    def search_text(self) -> str:
        """What is indexed: the title too, since a passage often never names its subject."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass(frozen=True)
class Corpus:
    documents: tuple[Document, ...]
    skipped: tuple[Skipped, ...] = ()


def corpus_files(path: Path) -> list[Path]:
    """The files `load_documents(path)` reads, in order; `DocumentError` if there is no corpus."""
    return list(iter_corpus_files(path))


def iter_corpus_files(path: Path) -> Iterator[Path]:
    """`corpus_files`, one at a time: asking whether there is any stops at the first."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise DocumentError(f"no documents at {path}: neither a file nor a folder")
    for root, dirs, files in os.walk(path):  # os.walk does not follow links, so cannot loop
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and _supported(Path(name)):
                yield Path(root, name)


def corpus_fingerprint(path: Path) -> str:
    """A digest of the corpus files' names, sizes and modification times; no file is read."""
    entries = []
    for file in corpus_files(path):
        stat = file.stat()
        entries.append([file.relative_to(path).as_posix(), stat.st_size, stat.st_mtime_ns])
    payload = json.dumps([str(path.resolve()), entries]).encode()
    return hashlib.sha256(payload).hexdigest()


def load_documents(path: Path) -> Corpus:
    """Every document at `path` (a JSONL file, a document file or a folder)."""
    if path.is_file():
        if path.suffix.lower() == ".jsonl":
            return Corpus(tuple(load_jsonl(path)))
        return Corpus((load_file(path, path.name),))
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for file in corpus_files(path):
        try:
            documents.append(load_file(file, file.relative_to(path).as_posix()))
        except DocumentError as exc:
            logger.warning("skipping %s", exc)
            skipped.append(Skipped(str(file), str(exc).removeprefix(f"{file}: ")))
    if not documents and not skipped:
        raise EmptyCorpus(f"no documents in {path}")
    if not documents:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in skipped[:3])
        raise DocumentError(
            f"no readable documents in {path}" + (f" ({reasons})" if reasons else "")
        )
    return Corpus(tuple(documents), tuple(skipped))


def load_jsonl(path: Path) -> list[Document]:
    """Documents from a JSONL file, one object a line; `DocumentError` names a bad line."""
    documents: list[Document] = []
    seen: set[str] = set()
    with path.open("rb") as handle:  # bytes, so a decoding error can name its line
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                record = json.loads(raw.decode("utf-8-sig"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                if not raw.strip():
                    continue
                raise DocumentError(f"{where}: not a JSON object ({exc})") from exc
            document = _record(record, where)
            if document.doc_id in seen:
                raise DocumentError(f"{where}: doc_id {document.doc_id!r} appears twice")
            seen.add(document.doc_id)
            if document.text.strip():
                documents.append(document)
    if not documents:
        raise DocumentError(f"{path}: no documents")
    return documents


def _record(record: object, where: str) -> Document:
    if not isinstance(record, dict):
        raise DocumentError(f"{where}: expected an object with doc_id, title and text")
    doc_id, title, text = record.get("doc_id"), record.get("title", ""), record.get("text")
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise DocumentError(f"{where}: doc_id must be a non-empty string")
    if not isinstance(text, str):
        raise DocumentError(f"{where}: text must be a string")
    if not isinstance(title, str):
        raise DocumentError(f"{where}: title must be a string")
    return Document(doc_id, title, text, where)


def load_file(path: Path, doc_id: str) -> Document:
    """One document file; `DocumentError` (starting with the path) when it cannot be read."""
    suffix = path.suffix.lower()
    if not _supported(path):
        raise DocumentError(f"{path}: unsupported file type (expected {', '.join(SUFFIXES)})")
    try:
        if suffix == ".pdf":
            title, text = _read_pdf(path)
        elif suffix in (".html", ".htm"):
            title, text = _read_html(path.read_bytes())
        else:
            text = path.read_bytes().decode("utf-8-sig")
            title = _markdown_title(text) if suffix == ".md" else ""
    except DocumentError as exc:
        raise DocumentError(f"{path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not text.strip():
        raise DocumentError(f"{path}: no text")
    return Document(doc_id, title or path.stem, text, str(path))


def _supported(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def _markdown_title(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip().rstrip("#").strip()
    return ""


def _read_html(data: bytes) -> tuple[str, str]:
    try:
        data.decode("utf-8")
        parser = lxml.html.HTMLParser(encoding="utf-8")
    except UnicodeDecodeError:
        parser = lxml.html.HTMLParser()  # let the page's own charset declaration decide
    try:
        tree = lxml.html.document_fromstring(data, parser=parser)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise DocumentError(f"not readable HTML ({exc})") from exc
    # with_tail=False: the text after a dropped element belongs to its parent and stays.
    lxml.etree.strip_elements(tree, lxml.etree.Comment, *_HTML_DROPPED, with_tail=False)
    title = _clean(tree.findtext(".//title") or "")
    if not title:
        heading = tree.find(".//h1")
        title = _text(heading) if heading is not None else ""
    for element in tree.iter(*_HTML_BLOCKS):
        element.text = "\n" + (element.text or "")
        element.tail = "\n" + (element.tail or "")
    body = tree.find("body")
    lines = _text(body if body is not None else tree).splitlines()
    return title, "\n".join(line for line in lines if line)


def _text(element: lxml.etree._Element) -> str:
    return _clean(lxml.etree.tostring(element, method="text", encoding="unicode", with_tail=False))


def _read_pdf(path: Path) -> tuple[str, str]:
    import pypdf  # here: most corpora have no PDF, and pypdf takes a moment to import

    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("encrypted PDF")
        pages = [_clean(page.extract_text() or "") for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many kinds on broken files; one reason is enough
        raise DocumentError(f"not a readable PDF ({type(exc).__name__}: {exc})") from exc
    text = "\n\n".join(page for page in pages if page)
    if not text:
        raise DocumentError("no extractable text (a scanned PDF?)")
    return _clean(str(title or "")), text


def _clean(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def split_passages(
    documents: Iterable[Document],
    max_words: int = 120,  # ~160 word pieces: inside MiniLM's 256, and short enough to quote
    overlap_words: int = 30,  # an answer cut by a window boundary is whole in the next window
) -> list[Passage]:
    """Overlapping windows of words; a document of at most `max_words` words is one passage.

    The windows of a document are of equal size (at most `max_words`), so that a document just
    over the limit becomes two halves rather than a full window and a stub.
    """
    if max_words < 1 or not 0 <= overlap_words < max_words:
        raise ValueError("need max_words >= 1 and 0 <= overlap_words < max_words")
    passages: list[Passage] = []
    for doc in documents:
        spans = [m.span() for m in _WORD.finditer(doc.text)]
        count = max(1, math.ceil((len(spans) - overlap_words) / (max_words - overlap_words)))
        size = math.ceil((len(spans) + (count - 1) * overlap_words) / count)
        for n in range(count if spans else 0):
            window = spans[n * (size - overlap_words) :][:size]
            start, end = window[0][0], window[-1][1]
            passage_id = f"{doc.doc_id}#{n}"
            text = doc.text[start:end]
            passages.append(
                Passage(passage_id, doc.doc_id, doc.title, text, doc.source, start, end)
            )
    return passages


def save_passages(passages: Iterable[Passage], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for passage in passages:
            handle.write(json.dumps(asdict(passage), ensure_ascii=False) + "\n")


def load_passages(path: Path) -> list[Passage]:
    with path.open(encoding="utf-8") as handle:
        return [Passage(**json.loads(line)) for line in handle]
