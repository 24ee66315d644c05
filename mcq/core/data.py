"""Read question files (CSV, Parquet, JSONL) into one canonical, validated form.

Every check runs before any training or inference starts, and every error names the file, the
row and the column, and says what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import string
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mcq.errors import DataError
from mcq.table import read_table

log = logging.getLogger(__name__)

# Option columns are single capital letters, contiguous from A (A-D for 4-option sets, A-E for LLMSE).
OPTION_LETTERS = string.ascii_uppercase
RESERVED = {"id", "prompt", "context", "answer"}
# .txt is read as CSV and .json as an array of rows, as the question files of some Kaggle datasets are
QUESTION_FORMATS = (".csv", ".tsv", ".parquet", ".jsonl", ".txt", ".json")


@dataclass(frozen=True)
class Questions:
    """Questions in canonical form: options in letter order, answers as indices into `letters`."""

    source: str
    ids: list[str]
    prompts: list[str]
    options: list[list[str]]
    letters: tuple[str, ...]
    contexts: list[str] | None = None
    answers: list[int] | None = None
    generated_ids: bool = False  # the file had no id column; ids are row numbers

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_answers(self) -> bool:
        return self.answers is not None

    def head(self, n: int | None) -> Questions:
        """The first n questions (all of them when n is None or larger than the set)."""
        if n is None or n >= len(self):
            return self
        cut = slice(0, n)
        return Questions(
            source=self.source,
            ids=self.ids[cut],
            prompts=self.prompts[cut],
            options=self.options[cut],
            letters=self.letters,
            contexts=None if self.contexts is None else self.contexts[cut],
            answers=None if self.answers is None else self.answers[cut],
            generated_ids=self.generated_ids,
        )

    def fingerprint(self) -> str:
        """A short hash of the content (not the file name): tells whether saved logits belong to this set."""
        content = [self.ids, self.prompts, self.options, list(self.letters), self.contexts, self.answers]
        return hashlib.sha256(json.dumps(content).encode("utf-8")).hexdigest()[:16]


def concat_questions(parts: list[Questions]) -> Questions:
    """Join question sets with the same option letters into one (e.g. extra generated data)."""
    if not parts:
        raise DataError("no question files given")
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for part in parts[1:]:
        if part.letters != first.letters:
            raise DataError(
                f"{part.source}: options {''.join(part.letters)} differ from {first.source}'s "
                f"{''.join(first.letters)}; files trained together need the same option columns."
            )
        if part.has_answers != first.has_answers:
            raise DataError(f"{part.source}: every training file needs an 'answer' column.")
    with_context = any(p.contexts is not None for p in parts)
    # row-number ids of files without an id column would collide, so they get the file's position
    ids = [f"{k}-{i}" if p.generated_ids else i for k, p in enumerate(parts) for i in p.ids]
    dupes = _duplicates(ids)
    if dupes:
        raise DataError(
            f"ids {dupes[:5]} appear in more than one of {[p.source for p in parts]}; "
            "give the files distinct ids (or drop the id column so ids are assigned)."
        )
    return Questions(
        source="+".join(p.source for p in parts),
        ids=ids,
        prompts=[x for p in parts for x in p.prompts],
        options=[x for p in parts for x in p.options],
        letters=first.letters,
        contexts=[x for p in parts for x in (p.contexts or [""] * len(p))] if with_context else None,
        answers=[x for p in parts for x in (p.answers or [])] if first.has_answers else None,
    )


def read_questions(path: str | Path, require_answer: bool = False, lenient: bool = False) -> Questions:
    """Read and validate one question file; raise DataError naming file, row and column on bad input."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a question file. Pass the file itself (e.g. {path}/train.csv).")
    if not path.is_file():
        raise DataError(f"{path}: no such file. Check the path (it is read relative to {Path.cwd()}).")
    frame, rows = read_table(
        path,
        QUESTION_FORMATS,
        DataError,
        columns="id,prompt,A,B,C,D,E[,answer]",
        bad_bytes=_warn_bad_bytes if lenient else None,
    )
    return _canonical(frame, rows, str(path), require_answer, lenient)


def _warn_bad_bytes(where: str) -> None:
    """Inference reads a file with bytes that are not UTF-8 anyway: the hidden test must be scored."""
    log.warning("%s; such bytes are read as U+FFFD so every question is still scored", where)


def _canonical(frame: pd.DataFrame, rows: list[str], source: str, require_answer: bool, lenient: bool) -> Questions:
    if len(frame) == 0:
        raise DataError(f"{source}: no questions below the header. Add rows or point at the right file.")
    names = [c.lower() if c.lower() in RESERVED else c for c in frame.columns]
    if lenient and not any(len(c) == 1 and c in OPTION_LETTERS for c in names):
        lower = [c for c in names if len(c) == 1 and c.upper() in OPTION_LETTERS]
        if lower:  # a test file written with a, b, c, ...: read as A, B, C
            log.warning("%s: lower-case option columns %s read as %s", source, lower, [c.upper() for c in lower])
            names = [c.upper() if c in lower else c for c in names]
    repeated = _duplicates(names)
    if repeated:
        raise DataError(
            f"{source}: column '{repeated[0]}' appears more than once in the header. Rename or drop the copy."
        )
    columns = dict(zip(names, frame.columns))
    if "prompt" not in columns:
        raise DataError(
            f"{source}: no 'prompt' column (columns are {list(frame.columns)}). "
            "Rename the question column to 'prompt'."
        )
    letters = _option_letters(list(columns), source)
    if require_answer and "answer" not in columns:
        raise DataError(
            f"{source}: no 'answer' column; training and validation files need the correct letter per row."
        )

    prompts = _column(frame, columns["prompt"]).tolist()
    ids = _ids(frame, columns, rows, source, lenient)
    empty = [i for i, prompt in enumerate(prompts) if not prompt.strip()]
    if empty and not lenient:
        raise DataError(f"{source}: {rows[empty[0]]}, column 'prompt' is empty. Fill it in or drop the row.")
    if empty:  # inference scores every question it is given: the options alone still rank
        log.warning(
            "%s: %d question(s) with an empty prompt, scored on their options alone: %s",
            source,
            len(empty),
            _named(ids, rows, empty),
        )
    options = [list(row) for row in zip(*(_column(frame, columns[x]).tolist() for x in letters))]
    _warn_empty_options(options, letters, source)
    blank = [i for i, opts in enumerate(options) if not any(opts)]
    if blank:
        log.warning(
            "%s: %d question(s) with every option empty; their predictions are %s: %s",
            source,
            len(blank),
            " ".join(letters[:3]),
            _named(ids, rows, blank),
        )
    answers = _answers(frame, columns, rows, letters, options, source) if "answer" in columns else None
    contexts = _column(frame, columns["context"]).tolist() if "context" in columns else None
    return Questions(source, ids, prompts, options, tuple(letters), contexts, answers, "id" not in columns)


def _named(ids: list[str], rows: list[str], picked: list[int], most: int = 10) -> str:
    """'id q7 (line 9), ...' for the first few of the picked rows."""
    shown = ", ".join(f"id {ids[i]} ({rows[i]})" for i in picked[:most])
    return shown + (f" and {len(picked) - most} more" if len(picked) > most else "")


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name].astype(str).str.strip()


def _option_letters(columns: list[str], source: str) -> list[str]:
    present = [c for c in columns if len(c) == 1 and c in OPTION_LETTERS]
    if not present:
        raise DataError(f"{source}: no option columns. Name them A, B, C, ... (columns are {columns}).")
    letters = list(OPTION_LETTERS[: max(OPTION_LETTERS.index(c) for c in present) + 1])
    missing = [x for x in letters if x not in present]
    if missing:
        raise DataError(
            f"{source}: option column(s) {missing} missing while {sorted(present)} exist; "
            "options must run A, B, C, ... without gaps."
        )
    if len(letters) < 2:
        raise DataError(f"{source}: only one option column (A); a question needs at least two options.")
    return letters


def _warn_empty_options(options: list[list[str]], letters: list[str], source: str) -> None:
    empty = sum(1 for opts in options for text in opts if not text)
    if empty:
        log.warning("%s: %d empty option cell(s) read as ''; they stay in play as blank options.", source, empty)


def _duplicates(values: list[str]) -> list[str]:
    seen, dupes = set(), []
    for v in values:
        if v in seen and v not in dupes:
            dupes.append(v)
        seen.add(v)
    return dupes


def _ids(
    frame: pd.DataFrame, columns: dict[str, str], rows: list[str], source: str, lenient: bool = False
) -> list[str]:
    if "id" not in columns:
        return [str(i) for i in range(len(frame))]
    ids = _column(frame, columns["id"]).tolist()
    first_seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        if not value:
            raise DataError(f"{source}: {rows[i]}, column 'id' is empty. Give every row an id (or drop the column).")
        if value in first_seen and lenient:
            continue  # reported once below
        if value in first_seen:
            raise DataError(
                f"{source}: {rows[i]}, column 'id': id '{value}' already used on {rows[first_seen[value]]}. "
                "Ids must be unique; fix or drop the duplicate row."
            )
        first_seen[value] = i
    repeated = {v: ids.count(v) for v in _duplicates(ids)}
    if repeated:  # inference scores every row; the submission repeats the id as the test file does
        shown = ", ".join(f"id '{v}' appears {n} times" for v, n in list(repeated.items())[:5])
        log.warning("%s: repeated ids (%s); every row is scored and keeps its id", source, shown)
    return ids


def _answers(frame, columns, rows, letters, options, source) -> list[int]:
    answers = []
    for i, value in enumerate(_column(frame, columns["answer"]).str.upper().tolist()):
        if value not in letters:
            raise DataError(
                f"{source}: {rows[i]}, column 'answer' is '{value}', not one of the option letters "
                f"{''.join(letters)}. Write the letter of the correct option."
            )
        k = letters.index(value)
        if not options[i][k]:
            raise DataError(
                f"{source}: {rows[i]}: the answer is {value} but column '{value}' is empty. Fix the key or the option."
            )
        answers.append(k)
    return answers
