"""The one table reader: every format whole and streamed alike, row numbers and labels, and errors that name
the file, the line and the fix, raised as the caller's error class."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mcq.errors import DataError, RetrievalError
from mcq.table import Chunk, read_table, stream_table, table_format

ALL = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")
ROWS = [
    {"id": "q1", "prompt": "What, with a comma?", "A": 'a "quoted" one'},
    {"id": "q2", "prompt": "Second", "A": ""},
    {"id": "q3", "prompt": "Third", "A": "é Δ ≥"},
]


def write(path: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix in (".csv", ".tsv", ".txt"):
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    elif path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def streamed(path: Path, rows: int = 2, error: type[Exception] = DataError) -> list[Chunk]:
    return list(stream_table(path, ALL, error, rows=rows))


def message(error: type[Exception], read, *args, **kwargs) -> str:
    with pytest.raises(error) as err:
        read(*args, **kwargs)
    return str(err.value)


# --- formats --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ALL)
def test_every_format_whole_and_streamed_gives_the_same_rows(tmp_path, suffix):
    path = write(tmp_path / f"t{suffix}", ROWS)
    frame, labels = read_table(path, ALL, DataError)
    assert list(frame.columns) == ["id", "prompt", "A"]
    assert frame.to_dict("records") == ROWS
    first = 2 if suffix in (".csv", ".tsv", ".txt") else 1  # text tables count lines, the header too
    word = "row" if suffix in (".parquet", ".pq", ".json") else "line"
    assert labels == [f"{word} {first + i}" for i in range(3)]
    rows = [row for chunk in streamed(path) for row in chunk.rows]
    assert rows == ROWS


def test_format_follows_the_suffix_in_any_case(tmp_path):
    assert [table_format(Path(f"x{s}"), ALL, DataError) for s in (".CSV", ".txt", ".pq", ".NDJSON", ".json")] == [
        "csv",
        "csv",
        "parquet",
        "jsonl",
        "json",
    ]


def test_missing_values_are_empty_text_and_numbers_their_text(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1, "b": 2.5, "c": true}\n{"b": null, "c": false}\n', encoding="utf-8")
    frame, _ = read_table(path, ALL, DataError)
    assert frame.to_dict("records") == [{"a": "1", "b": "2.5", "c": "True"}, {"a": "", "b": "", "c": "False"}]
    parquet = tmp_path / "t.parquet"
    pd.DataFrame({"a": ["x", None], "b": [1.5, float("nan")]}).to_parquet(parquet, index=False)
    assert read_table(parquet, ALL, DataError).frame.to_dict("records") == [{"a": "x", "b": "1.5"}, {"a": "", "b": ""}]


def test_typed_keeps_parquet_and_json_values_for_writing_back(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"n": [1, 2], "s": ["a", "b"]}).to_parquet(path, index=False)
    frame = read_table(path, ALL, DataError, typed=True).frame
    assert frame["n"].tolist() == [1, 2] and str(frame["n"].dtype) == "int64"
    lines = write(tmp_path / "t.jsonl", [{"n": 7, "s": "x"}])
    assert read_table(lines, ALL, DataError, typed=True).frame["n"].tolist() == [7]


def test_csv_quirks_crlf_bom_blank_lines_and_padded_names(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'\xef\xbb\xbf id ,text\r\n1,"two\r\nlines"\r\n,\r\n\r\n2,b\r\n')
    frame, labels = read_table(path, ALL, DataError)
    assert frame.to_dict("records") == [{"id": "1", "text": "two\nlines"}, {"id": "2", "text": "b"}]
    assert labels == ["line 3", "line 6"]  # the line a row ends on; the blank rows are skipped
    assert [(c.start, c.rows) for c in streamed(path)] == [
        (1, [{"id": "1", "text": "two\nlines"}, {"id": "2", "text": "b"}])
    ]


def test_old_mac_line_endings(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\r1,2\r3,4\r")
    assert read_table(path, ALL, DataError).frame.to_dict("records") == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


# --- streaming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_chunks_number_their_first_row(tmp_path, suffix):
    path = write(tmp_path / f"t{suffix}", [{"text": f"row {i}"} for i in range(1, 6)])
    chunks = streamed(path)
    assert [(c.start, len(c.rows)) for c in chunks] == [(1, 2), (3, 2), (5, 1)]
    assert [c.rows[0]["text"] for c in chunks] == ["row 1", "row 3", "row 5"]
    assert all(c.header == ["text"] for c in chunks)


def test_a_blank_json_line_keeps_its_number_in_chunks_and_is_no_row_whole(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": "x"}\n\n{"a": "y", "b": "z"}\n{}\n', encoding="utf-8")
    chunks = streamed(path)
    assert [(c.start, c.rows, c.header) for c in chunks] == [
        (1, [{"a": "x"}, {}], ["a"]),
        (3, [{"a": "y", "b": "z"}, {}], ["a", "b"]),  # a key met later joins the header from its chunk on
    ]
    frame, labels = read_table(path, ALL, DataError)
    assert labels == ["line 1", "line 3", "line 4"]  # an empty object is a row, a blank line is not
    assert frame.to_dict("records") == [{"a": "x", "b": ""}, {"a": "y", "b": "z"}, {"a": "", "b": ""}]


def test_a_header_without_rows_is_one_empty_chunk(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("title,text\n", encoding="utf-8")
    assert streamed(path) == [Chunk(["title", "text"], [], 1)]
    assert streamed(write(tmp_path / "e.jsonl", [])) == []


def test_streaming_reads_no_further_than_asked(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{oops\n', encoding="utf-8")
    chunks = stream_table(path, ALL, DataError, rows=2)
    assert next(chunks).rows == [{"a": 1}, {"a": 2}]
    with pytest.raises(DataError, match="row 3"):
        next(chunks)


# --- errors ---------------------------------------------------------------------------------------


def test_a_csv_row_with_the_wrong_field_count_names_its_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,"two\nlines"\n2,x,extra\n', encoding="utf-8")
    msg = message(DataError, read_table, path, ALL, DataError)
    assert msg == (
        f"{path}: line 4 has 3 fields but the header has 2. "
        "Quote fields that contain ',' or line breaks, or fix the row."
    )
    assert "line 4" in message(DataError, streamed, path)


def test_malformed_quotes_and_a_repeated_column_are_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,"x"y\n', encoding="utf-8")
    assert "line 2 is malformed CSV" in message(DataError, read_table, path, ALL, DataError)
    path.write_text("a,b, a\n1,2,3\n", encoding="utf-8")
    assert "column 'a' appears more than once" in message(DataError, read_table, path, ALL, DataError)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_byte_that_is_not_utf8_is_named_by_line_and_byte(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    first = b"a,b\n" if suffix == ".csv" else b'{"a": "x"}\n'
    bad = b"caf\xe9,1\n" if suffix == ".csv" else b'{"a": "caf\xe9"}\n'
    path.write_bytes(first + bad)
    byte = len(first) + bad.index(b"\xe9")
    expected = f"{path}: line 2 is not UTF-8 (byte {byte}). Re-save the file as UTF-8."
    assert message(DataError, read_table, path, ALL, DataError) == expected
    assert message(DataError, streamed, path) == expected


def test_bad_bytes_are_reported_once_and_read_as_replacement_characters(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\ncaf\xe9\nna\xefve\n")
    told: list[str] = []
    frame, _ = read_table(path, ALL, DataError, bad_bytes=told.append)
    assert frame["a"].tolist() == ["caf\ufffd", "na\ufffdve"]
    assert told == [f"{path}: line 2 is not UTF-8 (byte 5)"]


def test_an_unknown_suffix_lists_the_formats(tmp_path):
    msg = message(RetrievalError, table_format, tmp_path / "q.xlsx", (".csv", ".parquet", ".jsonl"), RetrievalError)
    assert msg == f"{tmp_path / 'q.xlsx'}: unknown file type '.xlsx'. Use .csv, .parquet or .jsonl."
    msg = message(DataError, read_table, tmp_path / "q.json", (".csv",), DataError, what="question file format")
    assert "unknown question file format '.json'. Use .csv." in msg


def test_empty_and_unreadable_files_say_what_they_need(tmp_path):
    empty = tmp_path / "t.csv"
    empty.write_text("\n\n", encoding="utf-8")
    msg = message(DataError, read_table, empty, ALL, DataError, columns="prompt,A,B")
    assert msg == f"{empty}: the file is empty. It needs a header row (prompt,A,B) and rows below it."
    lines = tmp_path / "t.jsonl"
    lines.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    assert "row 2 is a JSON list. Write one JSON object per line" in message(
        DataError, read_table, lines, ALL, DataError
    )
    junk = tmp_path / "t.parquet"
    junk.write_bytes(b"not parquet")
    assert "not a readable Parquet file" in message(DataError, read_table, junk, ALL, DataError)
    assert "not a readable Parquet file" in message(DataError, read_table, junk, ALL, DataError, typed=True)
    array = tmp_path / "t.json"
    array.write_text('{"a": [1]}', encoding="utf-8")
    assert "not an array" in message(DataError, read_table, array, ALL, DataError)


@pytest.mark.parametrize("error", [DataError, RetrievalError])
def test_the_error_class_passed_is_the_one_raised(tmp_path, error):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1\n", encoding="utf-8")
    other = RetrievalError if error is DataError else DataError
    for read in (lambda: read_table(path, ALL, error), lambda: streamed(path, error=error)):
        with pytest.raises(error) as err:
            read()
        assert not isinstance(err.value, other)
