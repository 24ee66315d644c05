"""Read tables (CSV, TSV, Parquet, JSON Lines, a JSON array) one way for every room: whole, or streamed in chunks.

Question files, passage files and corpora all come through here. The caller says which suffixes it accepts and
which error class to raise; every error names the file and the line or row, and says what to do.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pandas is imported where a table is read: `--help` of every command stays fast
    import pandas as pd

# suffix -> format; each caller accepts its own subset (a question file may be .txt or .json, a corpus .pq)
FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
PARQUET_BATCH = 20_000  # rows read from a Parquet file at a time

Record = dict[str, Any]
# (row number, label, record): rows counted from 1 ('line 7' or 'row 3' in errors); a blank JSON line is None
Row = tuple[int, str, Record | None]
BadBytes = Callable[[str], object]


class Table(NamedTuple):
    """A whole table and a label per row for errors: 'line 7' (CSV, JSON lines) or 'row 3' (Parquet, JSON)."""

    frame: pd.DataFrame
    labels: list[str]


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of a streamed table; `start` numbers the first (data rows from 1, the header not counted;
    JSON lines count every line, so a blank one is an empty row)."""

    header: list[str]  # JSON lines: the keys of the rows read so far
    rows: list[Record]
    start: int


def table_format(path: Path, suffixes: Sequence[str], error: type[Exception], what: str = "file type") -> str:
    """'csv', 'tsv', 'parquet', 'jsonl' or 'json' from the suffix (any case), which must be one of `suffixes`;
    `what` names the kind of file in the error ('corpus format')."""
    suffix = path.suffix.lower()
    if suffix not in suffixes or suffix not in FORMATS:
        listed = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        raise error(f"{path}: unknown {what} '{path.suffix}'. Use {listed}.")
    return FORMATS[suffix]


def read_table(
    path: Path,
    suffixes: Sequence[str],
    error: type[Exception],
    *,
    what: str = "file type",
    columns: str = "",
    bad_bytes: BadBytes | None = None,
    typed: bool = False,
) -> Table:
    """The whole table: every cell as text ('' when missing) and column names stripped, or with `typed` the
    values of Parquet and JSON as they are (to write the table back). `columns` names the expected columns in
    errors; `bad_bytes`, when given, is told where a byte is not UTF-8 and such bytes are read as U+FFFD."""
    import pandas as pd

    fmt = table_format(path, suffixes, error, what)
    if typed and fmt == "parquet":
        return _typed_parquet(path, error)
    header: list[str] = []
    kept = [(label, r) for _, label, r in _rows(path, fmt, header, error, columns, bad_bytes) if r is not None]
    labels = [label for label, _ in kept]
    if typed and fmt in ("jsonl", "json"):
        return Table(pd.DataFrame([r for _, r in kept], columns=header), labels)
    cells = [[_text(record.get(name)) for name in header] for _, record in kept]
    return Table(pd.DataFrame(cells, columns=[name.strip() for name in header], dtype=str), labels)


def stream_table(
    path: Path,
    suffixes: Sequence[str],
    error: type[Exception],
    *,
    rows: int,
    what: str = "file type",
    columns: str = "",
    bad_bytes: BadBytes | None = None,
) -> Iterator[Chunk]:
    """The table in chunks of `rows` rows, in file order, values as the format holds them (CSV: text), so a
    file larger than memory is never loaded whole. A table with columns but no rows gives one empty chunk."""
    fmt = table_format(path, suffixes, error, what)
    header: list[str] = []
    chunk: list[Record] = []
    start, sent = 1, False
    for number, _, record in _rows(path, fmt, header, error, columns, bad_bytes):
        if not chunk:
            start = number
        chunk.append({} if record is None else record)
        if len(chunk) >= rows:
            yield Chunk(list(header), chunk, start)
            chunk, sent = [], True
    if chunk or (header and not sent):
        yield Chunk(list(header), chunk, start)


def _rows(
    path: Path, fmt: str, header: list[str], error: type[Exception], columns: str, bad_bytes: BadBytes | None
) -> Iterator[Row]:
    """Every row of the file in order; fills `header` before the first (JSON lines: as new keys are met)."""
    if fmt == "parquet":
        yield from _parquet_rows(path, header, error)
        return
    try:
        if fmt == "jsonl":
            yield from _jsonl_rows(path, header, error, columns, bad_bytes)
        elif fmt == "json":
            yield from _json_rows(path, header, error, columns, bad_bytes)
        else:
            yield from _csv_rows(path, "\t" if fmt == "tsv" else ",", header, error, columns, bad_bytes)
    except UnicodeDecodeError as err:
        line, byte = _first_bad_byte(path) or (0, err.start)
        raise error(f"{_not_utf8(path, line, byte)}. Re-save the file as UTF-8.") from err


def _open_text(path: Path, bad_bytes: BadBytes | None, newline: str | None = None) -> IO[str]:
    """The file as UTF-8 text without its BOM; with `bad_bytes`, the first byte that is not UTF-8 is reported to
    it and such bytes read as U+FFFD (without, reading stops with UnicodeDecodeError)."""
    if bad_bytes is None:
        return path.open(encoding="utf-8-sig", newline=newline)
    found = _first_bad_byte(path)
    if found:
        bad_bytes(_not_utf8(path, *found))
    return path.open(encoding="utf-8-sig", errors="replace", newline=newline)


def _first_bad_byte(path: Path) -> tuple[int, int] | None:
    """(line, byte offset) of the first byte that is not UTF-8, or None; read a line at a time."""
    offset = 0
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return line, offset + err.start
            offset += len(raw)
    return None


def _not_utf8(path: Path, line: int, byte: int) -> str:
    return f"{path}: line {line} is not UTF-8 (byte {byte})"


def _csv_rows(
    path: Path, delimiter: str, header: list[str], error: type[Exception], columns: str, bad_bytes: BadBytes | None
) -> Iterator[Row]:
    """Strict CSV: rows of blank cells are skipped, every other row has as many fields as the header."""
    # the csv module refuses a cell over 131,072 characters by default; retrieved context can be longer
    csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size))
    with _open_text(path, bad_bytes, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        try:
            header.extend(_csv_header(reader, path, error, columns))
            number = 0
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue  # a blank line, e.g. a trailing CRLF
                if len(record) != len(header):
                    shown = "\\t" if delimiter == "\t" else delimiter
                    raise error(
                        f"{path}: line {reader.line_num} has {len(record)} fields but the header has "
                        f"{len(header)}. Quote fields that contain '{shown}' or line breaks, or fix the row."
                    )
                number += 1
                yield number, f"line {reader.line_num}", dict(zip(header, (c.replace("\r\n", "\n") for c in record)))
        except csv.Error as err:
            raise error(f"{path}: line {reader.line_num} is malformed CSV ({err}). Check its quotes.") from err


def _csv_header(reader: Iterator[list[str]], path: Path, error: type[Exception], columns: str) -> list[str]:
    """The first non-blank row, names stripped; a file without one, or a name given twice, is an error."""
    header = next((r for r in reader if any(cell.strip() for cell in r)), None)
    if header is None:
        expected = f" ({columns})" if columns else ""
        raise error(f"{path}: the file is empty. It needs a header row{expected} and rows below it.")
    names = [name.strip() for name in header]
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        raise error(f"{path}: column '{twice}' appears more than once in the header. Rename or drop the copy.")
    return names


def _jsonl_rows(
    path: Path, header: list[str], error: type[Exception], columns: str, bad_bytes: BadBytes | None
) -> Iterator[Row]:
    """One JSON object per line; the header is the keys met so far (a row may lack some)."""
    keys: dict[str, None] = {}
    with _open_text(path, bad_bytes) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                yield number, f"line {number}", None  # a blank line keeps its number, so rows stay line numbers
                continue
            record = _json_object(line, number, path, error, columns)
            if not keys.keys() >= record.keys():
                keys |= dict.fromkeys(record)
                header[:] = keys
            yield number, f"line {number}", record


def _json_object(line: str, number: int, path: Path, error: type[Exception], columns: str) -> Record:
    fix = f"Write one JSON object per line{f' with keys {columns}' if columns else ''}."
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise error(
            f"{path}: not valid JSON Lines: row {number} is not JSON ({err.msg} at column {err.colno}). {fix}"
        ) from err
    if not isinstance(record, dict):
        raise error(f"{path}: not valid JSON Lines: row {number} is a JSON {type(record).__name__}. {fix}")
    return record


def _json_rows(
    path: Path, header: list[str], error: type[Exception], columns: str, bad_bytes: BadBytes | None
) -> Iterator[Row]:
    """A JSON array of objects, one per row."""
    fix = f"Write a JSON array of objects{f' with keys {columns}' if columns else ''}, one per row."
    with _open_text(path, bad_bytes) as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as err:
            raise error(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}). {fix}") from err
    if not isinstance(records, list):
        raise error(f"{path}: the JSON is a {type(records).__name__}, not an array. {fix}")
    bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
    if bad is not None:
        raise error(f"{path}: row {bad + 1} is a JSON {type(records[bad]).__name__}, not an object. {fix}")
    header.extend(dict.fromkeys(key for record in records for key in record))
    for number, record in enumerate(records, start=1):
        yield number, f"row {number}", record


def _parquet_rows(path: Path, header: list[str], error: type[Exception]) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)  # column chunks streamed, not whole
        header.extend(table.schema_arrow.names)
        number = 0
        for batch in table.iter_batches(batch_size=PARQUET_BATCH):
            for record in batch.to_pylist():
                number += 1
                yield number, f"row {number}", record
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise error(_unreadable_parquet(path, err)) from err


def _typed_parquet(path: Path, error: type[Exception]) -> Table:
    """A Parquet file read by pandas with its column types and index, as it will be written back."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (ValueError, OSError) as err:
        raise error(_unreadable_parquet(path, err)) from err
    return Table(frame, [f"row {i + 1}" for i in range(len(frame))])


def _unreadable_parquet(path: Path, err: Exception) -> str:
    return f"{path}: not a readable Parquet file ({err}). Check it was copied whole, or write it again."


def _text(value: Any) -> str:
    """A cell as text: missing (None, NaN) is ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)
