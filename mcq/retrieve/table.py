"""Question tables for `mcq.retrieve context`: read any of our formats whole, add a context column, write back
in the same format with every other column and the row order kept."""

from __future__ import annotations

import string
from pathlib import Path

import pandas as pd

import mcq.table
from mcq.errors import RetrievalError
from mcq.io import atomic_write

FORMATS = (".csv", ".tsv", ".parquet", ".jsonl")


def read_table(path: str | Path) -> pd.DataFrame:
    """The question table whole, Parquet and JSON values with their types, so it is written back as it was."""
    path = Path(path)
    mcq.table.table_format(path, FORMATS, RetrievalError, "question file format")
    if not path.is_file():
        raise RetrievalError(f"{path}: no such question file")
    return mcq.table.read_table(path, FORMATS, RetrievalError, what="question file format", typed=True).frame


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    fmt = mcq.table.table_format(path, FORMATS, RetrievalError, "question file format")

    def write(tmp: Path) -> None:
        if fmt in ("csv", "tsv"):
            frame.to_csv(tmp, sep="\t" if fmt == "tsv" else ",", index=False)
        elif fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)

    return atomic_write(path, write)


def queries_of(frame: pd.DataFrame, source: str) -> tuple[list[str], list[list[str]]]:
    """(prompts, options) of every row: the prompt column and the single-letter option columns, A first."""
    if "prompt" not in frame.columns:
        raise RetrievalError(f"{source}: no 'prompt' column (columns: {', '.join(map(str, frame.columns))})")
    letters = sorted(c for c in frame.columns if isinstance(c, str) and len(c) == 1 and c in string.ascii_uppercase)
    if not letters:
        raise RetrievalError(f"{source}: no option columns (A, B, C, ...)")
    prompts = [_text(v) for v in frame["prompt"]]
    options = [[_text(v) for v in row] for row in frame[letters].itertuples(index=False)]
    return prompts, options


def _text(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def with_context(frame: pd.DataFrame, contexts: list[str]) -> pd.DataFrame:
    """The table with its context column added (after the prompt) or replaced in place."""
    out = frame.copy()
    if "context" in out.columns:
        out["context"] = contexts
    else:
        out.insert(list(out.columns).index("prompt") + 1, "context", contexts)
    return out
