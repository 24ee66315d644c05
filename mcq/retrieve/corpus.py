"""Stream articles out of corpus files (CSV, TSV, Parquet, JSONL, or folders of them) and cut them into passages.

Files are read in chunks, so a corpus larger than memory is never loaded whole. Every error names the
file, the row (data rows counted from 1, the header not counted) and the column.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mcq.errors import RetrievalError
from mcq.retrieve.settings import PassageSettings
from mcq.retrieve.split import split_article
from mcq.table import stream_table, table_format

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson")
TEXT_COLUMNS = ("text", "passage", "content", "context", "body", "paragraph", "article")
TITLE_COLUMNS = ("title", "page_title", "section")
ID_COLUMNS = ("id", "doc_id", "article_id", "page_id")
CHUNK_ROWS = 20_000  # rows read at a time


@dataclass(frozen=True)
class Article:
    source: str  # the file
    row: int  # data row, from 1
    doc: str  # the id column, or file:row
    title: str
    text: str


@dataclass(frozen=True)
class Passage:
    doc: str
    title: str
    text: str

    def search_text(self, with_title: bool) -> str:
        """What the retrievers index: the title (when kept) then the passage."""
        return f"{self.title}. {self.text}" if with_title and self.title else self.text


def corpus_files(paths: Sequence[str | Path]) -> list[Path]:
    """The corpus files named, folders searched recursively (sorted); an unknown suffix is an error."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise RetrievalError(f"{path}: no corpus file in this folder (looked for {', '.join(SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            table_format(path, SUFFIXES, RetrievalError, "corpus format")
            files.append(path)
        else:
            raise RetrievalError(f"{path}: no such corpus file or folder")
    return files


def read_articles(path: Path, text_column: str | None = None) -> Iterator[Article]:
    """One Article per row of one file, in file order; rows with empty text are skipped (and counted)."""
    chunks = stream_table(path, SUFFIXES, RetrievalError, rows=CHUNK_ROWS, what="corpus format")
    first = next(chunks, None)
    if first is None:
        return
    names, columns = first.header, _columns(path, first.header, text_column)
    empty = 0
    for chunk in _chain(first, chunks):
        if chunk.header != names:  # JSON lines: a key first met in a later chunk (a title, an id)
            names, columns = chunk.header, _columns(path, chunk.header, columns["text"])
        for offset, record in enumerate(chunk.rows):
            row = chunk.start + offset
            if record and columns["text"] not in record:
                _other_text_key(path, row, record, columns["text"])
            text = _cell(record.get(columns["text"]), path, row, columns["text"])
            if not text.strip():
                empty += 1
                continue
            title = _cell(record.get(columns["title"]), path, row, columns["title"]) if columns["title"] else ""
            doc = _cell(record.get(columns["id"]), path, row, columns["id"]) if columns["id"] else ""
            yield Article(str(path), row, doc or f"{path.name}:{row}", title.strip(), text)
    if empty:
        log.warning("%s: %d row(s) with an empty '%s' skipped", path, empty, columns["text"])


def _other_text_key(path: Path, row: int, record: dict, text: str | None) -> None:
    """A JSON line whose text sits under another text key than the corpus's: say so rather than skip it as
    empty (the rows would be lost behind a warning about empty text)."""
    other = next((k for k in record if k.lower() in TEXT_COLUMNS and k != text), None)
    if other is not None:
        raise RetrievalError(
            f"{path}: row {row}: no '{text}' key but '{other}'; the corpus must keep its text under one key. "
            f"Rename the key in the file, or pass --text-column {other} for a corpus that uses it throughout."
        )


def _chain(first, rest):
    yield first
    yield from rest


def _columns(path: Path, names: list[str], text_column: str | None) -> dict[str, str | None]:
    """Which column holds the text, the title and the id (case-insensitive; --text-column wins)."""
    lower = {n.lower(): n for n in names}
    if text_column:
        if text_column not in names and text_column.lower() not in lower:
            raise RetrievalError(f"{path}: no column '{text_column}' (columns: {', '.join(names)})")
        text: str | None = text_column if text_column in names else lower[text_column.lower()]
    else:
        text = next((lower[c] for c in TEXT_COLUMNS if c in lower), None)
        if text is None:
            raise RetrievalError(
                f"{path}: no text column; expected one of {', '.join(TEXT_COLUMNS)} (columns: {', '.join(names)}). "
                "Name it with --text-column."
            )
    title = next((lower[c] for c in TITLE_COLUMNS if c in lower and lower[c] != text), None)
    doc = next((lower[c] for c in ID_COLUMNS if c in lower and lower[c] != text), None)
    return {"text": text, "title": title, "id": doc}


def _cell(value, path: Path, row: int, column: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN: an empty CSV or Parquet cell
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise RetrievalError(
        f"{path}: row {row}, column '{column}': expected text, got {type(value).__name__} {str(value)[:60]!r}"
    )


def passages(
    paths: Sequence[str | Path],
    settings: PassageSettings,
    text_column: str | None = None,
    stats: dict | None = None,
) -> Iterator[Passage]:
    """Every distinct passage of the corpus in order (a passage met twice, title and text alike, is kept once).

    `stats` receives articles, passages, duplicates and the corpus fingerprint (a hash of every article read)."""
    stats = stats if stats is not None else {}
    stats.update(articles=0, passages=0, duplicates=0, files=0)
    content = hashlib.blake2b(digest_size=16)
    seen: set[bytes] = set()
    for path in corpus_files(paths):
        stats["files"] += 1
        for article in read_articles(path, text_column):
            stats["articles"] += 1
            content.update(f"{article.title}\x1f{article.text}\x1e".encode())
            for text in split_article(article.text, settings):
                key = hashlib.blake2b(f"{article.title}\x1f{text}".encode(), digest_size=8).digest()
                if key in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(key)
                stats["passages"] += 1
                yield Passage(article.doc, article.title, text)
    stats["fingerprint"] = content.hexdigest()
    if not stats["passages"]:
        raise RetrievalError(f"corpus {[str(p) for p in paths]}: no passage with text in {stats['articles']} row(s)")


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
