"""Question tables for `mcq.retrieve context`: read any of our formats whole, add a context column, write back
in the same format with every other column and the row order kept."""

from __future__ import annotations

import string
from pathlib import Path

import pandas as pd

from mcq.errors import RetrievalError
from mcq.io import atomic_write

FORMATS = (".csv", ".tsv", ".parquet", ".jsonl")


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise RetrievalError(f"{path}: unknown question file format '{path.suffix}'; use one of {', '.join(FORMATS)}")
    return suffix


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    suffix = _format(path)
    if not path.is_file():
        raise RetrievalError(f"{path}: no such question file")
    try:
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True, dtype=False)
    except (ValueError, pd.errors.ParserError, OSError) as err:
        raise RetrievalError(f"{path}: cannot be read as a {suffix[1:].upper()} question file: {err}") from err


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    suffix = _format(path)

    def write(tmp: Path) -> None:
        if suffix in (".csv", ".tsv"):
            frame.to_csv(tmp, sep="\t" if suffix == ".tsv" else ",", index=False)
        elif suffix == ".parquet":
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
