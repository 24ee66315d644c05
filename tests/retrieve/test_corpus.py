"""Reading corpus files: every format alike, folders, column detection, streaming, errors that say where,
de-duplication and the corpus fingerprint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import mcq.retrieve.corpus as corpus
from mcq.errors import RetrievalError
from mcq.retrieve.corpus import Passage, corpus_files, passages, read_articles
from mcq.retrieve.settings import PassageSettings

ROWS: list[dict[str, Any]] = [
    {"id": 1, "title": "Volcano", "text": 'Magma rises through the crust, and erupts as "lava".'},
    {"id": 2, "title": "Photosynthesis", "text": "Plants turn sunlight, water and carbon dioxide into sugar."},
    {"id": 3, "title": "Jupiter", "text": "Jupiter is the largest planet of the solar system."},
]
EXPECTED = [
    (1, "1", "Volcano", ROWS[0]["text"]),
    (2, "2", "Photosynthesis", ROWS[1]["text"]),
    (3, "3", "Jupiter", ROWS[2]["text"]),
]


def write(path: Path, rows: list[dict]) -> Path:
    """rows in the format of path's suffix (pandas for CSV/TSV/Parquet, one json.dumps a line for JSONL)."""
    frame = pd.DataFrame(rows)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def content(path: Path, **kw) -> list[tuple]:
    return [(a.row, a.doc, a.title, a.text) for a in read_articles(path, **kw)]


def errors(path: Path, **kw) -> str:
    with pytest.raises(RetrievalError) as err:
        list(read_articles(path, **kw))
    return str(err.value)


# --- formats and files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["c.csv", "c.tsv", "c.parquet", "c.pq", "c.jsonl", "c.ndjson"])
def test_every_format_yields_the_same_articles(tmp_path, name):
    path = write(tmp_path / name, ROWS)
    assert content(path) == EXPECTED
    assert all(a.source == str(path) for a in read_articles(path))


def test_a_folder_is_searched_recursively_in_sorted_order(tmp_path):
    write(tmp_path / "z.csv", ROWS[:1])
    (tmp_path / "a").mkdir()
    write(tmp_path / "a" / "b.jsonl", ROWS[1:2])
    (tmp_path / "a" / "notes.txt").write_text("not a corpus file")
    write(tmp_path / "m.PARQUET", ROWS[2:])
    write(tmp_path / "a" / "c.TSV", ROWS[2:])
    assert corpus_files([tmp_path]) == [
        tmp_path / "a" / "b.jsonl",
        tmp_path / "a" / "c.TSV",
        tmp_path / "m.PARQUET",
        tmp_path / "z.csv",
    ]
    titles = [a.title for f in corpus_files([tmp_path]) for a in read_articles(f)]
    assert titles == ["Photosynthesis", "Jupiter", "Jupiter", "Volcano"]


def test_files_and_folders_named_are_read_in_the_order_given(tmp_path):
    first, second = write(tmp_path / "b.csv", ROWS[:1]), write(tmp_path / "a.csv", ROWS[1:])
    assert corpus_files([first, second]) == [first, second]


def test_unknown_suffix_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("text\nhello\n")
    with pytest.raises(RetrievalError, match=r"unknown corpus format '\.txt'") as err:
        corpus_files([path])
    assert str(path) in str(err.value)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(RetrievalError, match="no such corpus file or folder") as err:
        corpus_files([tmp_path / "nowhere"])
    assert str(tmp_path / "nowhere") in str(err.value)


def test_folder_without_corpus_files_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.md").write_text("# not a corpus")
    for folder in (tmp_path / "empty", tmp_path / "other"):
        with pytest.raises(RetrievalError, match="no corpus file in this folder"):
            corpus_files([folder])


# --- columns ------------------------------------------------------------------------------------


def test_title_and_id_columns_are_found_whatever_their_case(tmp_path):
    path = write(tmp_path / "c.csv", [{"Page_Title": "Moon", "DOC_ID": "m-1", "Content": "The Moon orbits Earth."}])
    assert content(path) == [(1, "m-1", "Moon", "The Moon orbits Earth.")]


def test_jsonl_keys_first_met_in_a_later_chunk_are_used_from_there(tmp_path, monkeypatch):
    import mcq.retrieve.corpus as corpus

    monkeypatch.setattr(corpus, "CHUNK_ROWS", 2)
    rows = [
        {"text": "one"},
        {"text": "two"},
        {"text": "three", "title": "Third", "id": "d3"},
        {"content": "x", "text": "four"},
    ]
    path = write(tmp_path / "c.jsonl", rows)
    got = [(a.doc, a.title, a.text) for a in read_articles(path)]
    assert got == [
        ("c.jsonl:1", "", "one"),
        ("c.jsonl:2", "", "two"),
        ("d3", "Third", "three"),
        ("c.jsonl:4", "", "four"),
    ]


def test_without_an_id_column_the_doc_is_file_and_row(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"text": "first"}, {"text": "second"}])
    assert [(a.doc, a.title) for a in read_articles(path)] == [("c.jsonl:1", ""), ("c.jsonl:2", "")]


def test_text_column_override_wins_over_the_usual_names(tmp_path):
    path = write(tmp_path / "c.csv", [{"title": "T", "text": "short", "summary": "the long one"}])
    assert content(path, text_column="summary") == [(1, "c.csv:1", "T", "the long one")]
    assert content(path, text_column="SUMMARY")[0][3] == "the long one"


def test_text_column_override_that_is_missing_lists_the_columns(tmp_path):
    path = write(tmp_path / "c.csv", [{"title": "T", "body": "b"}])
    msg = errors(path, text_column="summary")
    assert str(path) in msg and "'summary'" in msg and "title, body" in msg


def test_no_text_column_lists_the_columns_and_the_flag(tmp_path):
    path = write(tmp_path / "c.csv", [{"name": "x", "words": "y"}])
    msg = errors(path)
    assert str(path) in msg and "no text column" in msg and "name, words" in msg and "--text-column" in msg


# --- errors name file, row and column -------------------------------------------------------------


def test_a_line_that_is_not_json_names_its_line_blank_lines_counted(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "one"}\n\n{"text": "three"\n{"text": "four"}\n', encoding="utf-8")
    msg = errors(path)
    assert str(path) in msg and "row 3" in msg and "not JSON" in msg


def test_a_json_line_that_is_a_list_is_an_error(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "one"}\n["two", "three"]\n', encoding="utf-8")
    msg = errors(path)
    assert str(path) in msg and "row 2" in msg and "list" in msg


def test_a_cell_that_is_not_text_names_row_and_column(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"text": "fine"}, {"text": "also fine"}, {"text": {"nested": 1}}])
    msg = errors(path)
    assert str(path) in msg and "row 3" in msg and "column 'text'" in msg and "dict" in msg


def test_a_title_that_is_not_text_names_its_column(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"title": ["a", "b"], "text": "fine"}])
    msg = errors(path)
    assert "row 1" in msg and "column 'title'" in msg and "list" in msg


def test_numbers_in_cells_are_read_as_text(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"id": 7, "title": 1984, "text": 3.5}])
    assert content(path) == [(1, "7", "1984", "3.5")]


def test_a_file_that_is_not_utf8_says_so(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes("text\ncaf\xe9 au lait\n".encode("latin-1"))
    assert "not UTF-8" in errors(path)


def test_an_empty_csv_file_says_it_is_empty(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("")
    msg = errors(path)
    assert str(path) in msg and "empty" in msg


def test_rows_with_empty_text_are_skipped_with_a_warning(tmp_path, caplog):
    path = write(
        tmp_path / "c.csv",
        [
            {"title": "A", "text": "kept"},
            {"title": "B", "text": ""},
            {"title": "C", "text": "   "},
            {"title": "D", "text": "also kept"},
        ],
    )
    with caplog.at_level(logging.WARNING, logger="mcq.retrieve.corpus"):
        got = content(path)
    assert [(row, title) for row, _, title, _ in got] == [(1, "A"), (4, "D")]  # rows keep their numbers
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 row(s)" in warnings[0] and str(path) in warnings[0]


def test_missing_parquet_cells_are_empty_text(tmp_path):
    path = write(tmp_path / "c.parquet", [{"title": "A", "text": "kept"}, {"title": None, "text": None}])
    assert content(path) == [(1, "c.parquet:1", "A", "kept")]


def test_a_corpus_without_any_text_is_an_error(tmp_path):
    empty_rows = write(tmp_path / "a.csv", [{"title": "A", "text": ""}, {"title": "B", "text": ""}])
    header_only = tmp_path / "b.csv"
    header_only.write_text("title,text\n")
    for path in (empty_rows, header_only):
        with pytest.raises(RetrievalError, match="no passage with text"):
            list(passages([path], PassageSettings()))


# --- streaming ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_rows_are_numbered_across_chunks(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(corpus, "CHUNK_ROWS", 2)
    path = write(tmp_path / f"c{suffix}", [{"text": f"article number {i}"} for i in range(1, 8)])
    assert [(a.row, a.text) for a in read_articles(path)] == [(i, f"article number {i}") for i in range(1, 8)]


def test_an_error_in_the_third_chunk_names_its_row_after_the_earlier_rows_were_read(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_ROWS", 2)
    path = tmp_path / "c.jsonl"
    lines = [json.dumps({"text": f"row {i}"}) for i in range(1, 5)] + [json.dumps({"text": {"bad": True}}), "{}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    articles = read_articles(path)
    assert [next(articles).row for _ in range(4)] == [1, 2, 3, 4]  # streamed: read before the bad row is reached
    with pytest.raises(RetrievalError, match="row 5, column 'text'"):
        next(articles)


def test_a_bad_json_line_in_a_later_chunk_names_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_ROWS", 2)
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": "c"}\n{"text": "d"}\n{oops\n', encoding="utf-8")
    assert "row 6" in errors(path)


# --- passages, duplicates, fingerprint ----------------------------------------------------------


def test_passages_come_in_corpus_order_with_their_doc_and_title(tmp_path):
    path = write(tmp_path / "c.csv", ROWS)
    stats: dict = {}
    got = list(passages([path], PassageSettings(), stats=stats))
    assert got == [Passage(str(r["id"]), r["title"], r["text"]) for r in ROWS]
    assert stats["articles"] == 3 and stats["passages"] == 3 and stats["duplicates"] == 0 and stats["files"] == 1


def test_the_same_title_and_text_twice_is_stored_once_but_another_title_is_kept(tmp_path):
    text = "Water boils at one hundred degrees at sea level."
    first = write(tmp_path / "a.csv", [{"title": "Water", "text": text}, {"title": "Boiling", "text": text}])
    again = write(tmp_path / "b.jsonl", [{"title": "Water", "text": text}])
    stats: dict = {}
    got = list(passages([first, again], PassageSettings(), stats=stats))
    assert [(p.doc, p.title) for p in got] == [("a.csv:1", "Water"), ("a.csv:2", "Boiling")]
    assert stats["duplicates"] == 1 and stats["passages"] == 2 and stats["articles"] == 3 and stats["files"] == 2


def test_passage_search_text_puts_the_title_first_when_asked():
    passage = Passage("d", "Moon", "It orbits Earth.")
    assert passage.search_text(True) == "Moon. It orbits Earth."
    assert passage.search_text(False) == "It orbits Earth."
    assert Passage("d", "", "Untitled.").search_text(True) == "Untitled."


def fingerprint(paths: list[Path]) -> str:
    stats: dict = {}
    list(passages(paths, PassageSettings(), stats=stats))
    return stats["fingerprint"]


def test_fingerprint_follows_the_content_not_the_file_name_or_format(tmp_path):
    path = write(tmp_path / "c.csv", ROWS)
    before = fingerprint([path])
    renamed = path.rename(tmp_path / "renamed.csv")
    assert fingerprint([renamed]) == before
    assert fingerprint([write(tmp_path / "c.parquet", ROWS)]) == before
    assert fingerprint([write(tmp_path / "c.jsonl", ROWS)]) == before
    changed = [dict(r) for r in ROWS]
    changed[1]["text"] += " More sugar."
    assert fingerprint([write(tmp_path / "changed.csv", changed)]) != before
    retitled = [dict(r) for r in ROWS]
    retitled[2]["title"] = "Saturn"
    assert fingerprint([write(tmp_path / "retitled.csv", retitled)]) != before


def test_json_lines_with_the_text_under_two_keys_name_the_row_instead_of_losing_it(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "Atoms are small particles of matter."}\n'
                    '{"content": "Cells divide by mitosis in most tissues."}\n', encoding="utf-8")  # fmt: skip
    with pytest.raises(RetrievalError, match=r"c\.jsonl: row 2: no 'text' key but 'content'.*--text-column"):
        list(read_articles(path))
