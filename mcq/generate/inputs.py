"""What generation requests are built from: grounding passages, prompt templates and few-shot examples."""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mcq.core.data import Questions
from mcq.errors import ConfigError, DataError
from mcq.generate.checks import LETTERS
from mcq.table import read_table

# The tool's logger name (`python -m mcq.generate`): the one users see in its output and filter on.
log = logging.getLogger("mcq.generate")

PROMPTS = Path(__file__).parent / "prompts"
GENERATE_FIELDS = frozenset({"examples", "passage", "source", "number", "n", "letters"})
VERIFY_FIELDS = frozenset({"question", "options", "letters", "passage", "source"})
PASSAGE_TABLES = (".csv", ".parquet", ".jsonl")  # besides .txt files and folders of them


@dataclass(frozen=True)
class Passage:
    """One grounding passage; name says where it came from (file, paragraph or row)."""

    name: str
    text: str


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, stripped, empty ones dropped."""
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")) if p.strip()]


def load_passages(path: str | Path, max_chars: int | None = None) -> list[Passage]:
    """Passages from a .txt file, a folder of .txt files or a table; repeated texts are dropped."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        passages = [Passage(f.relative_to(path).as_posix(), _read_text(f).strip()) for f in files]
    elif path.is_file() and path.suffix.lower() == ".txt":
        passages = [Passage(f"{path.name}#{i + 1}", p) for i, p in enumerate(split_paragraphs(_read_text(path)))]
    elif path.is_file():
        passages = _table_passages(path)
    else:
        raise DataError(f"{path}: no such file or folder of passages. Check --passages.")
    passages = _unique_passages([p for p in passages if p.text], path)
    if max_chars:
        cut = sum(len(p.text) > max_chars for p in passages)
        if cut:
            log.warning("%s: %d passage(s) cut to %d characters (--passage-max-chars)", path, cut, max_chars)
        passages = [Passage(p.name, p.text[:max_chars]) for p in passages]
    if not passages:
        raise DataError(f"{path}: no passages found (empty files, or no .txt files in the folder).")
    return passages


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 (byte {err.start}). Re-save the file as UTF-8.") from err


def _table_passages(path: Path) -> list[Passage]:
    """One passage per row of a table, from its 'text' (or else 'context') column."""
    if path.suffix.lower() not in PASSAGE_TABLES:
        raise DataError(
            f"{path}: unknown passage file type '{path.suffix}'. Use .txt, a folder of .txt, .csv, .parquet or .jsonl."
        )
    frame = read_table(path, PASSAGE_TABLES, DataError, what="passage file type", columns="text or context").frame
    column = next((c for c in ("text", "context") if c in frame.columns), None)
    if column is None:
        raise DataError(
            f"{path}: no 'text' or 'context' column (columns are {list(frame.columns)}). Rename the passage column."
        )
    texts = frame[column].str.strip().tolist()
    return [Passage(f"{path.name}:row {i + 1}", t) for i, t in enumerate(texts)]


def _unique_passages(passages: list[Passage], path: Path) -> list[Passage]:
    seen: set[str] = set()
    unique = []
    for p in passages:
        if p.text not in seen:
            seen.add(p.text)
            unique.append(p)
    if len(unique) < len(passages):
        log.warning("%s: %d repeated passage(s) dropped", path, len(passages) - len(unique))
    return unique


def load_template(path: str | Path, allowed: frozenset[str]) -> string.Template:
    """A prompt template with $placeholders; unknown placeholders are an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: template file not found")
    template = string.Template(path.read_text(encoding="utf-8"))
    if not template.is_valid():
        raise ConfigError(f"{path}: a '$' that is not a placeholder; write $$ for a literal $")
    unknown = sorted(set(template.get_identifiers()) - allowed)
    if unknown:
        raise ConfigError(
            f"{path}: unknown placeholder(s) {['$' + u for u in unknown]}; known: {sorted('$' + a for a in allowed)}"
        )
    return template


def format_examples(questions: Questions | None, picks: Sequence[int]) -> str:
    """The few-shot block for $examples: a heading and one JSON object per example, or '' for none."""
    if questions is None or not picks:
        return ""
    assert questions.answers is not None  # examples are read with require_answer=True
    lines = ["", "Here are example questions from the exam, each in the reply format:"]
    for i in picks:
        obj = {"prompt": questions.prompts[i], **dict(zip(questions.letters, questions.options[i]))}
        obj["answer"] = questions.letters[questions.answers[i]]
        lines.append(json.dumps(obj, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def format_options(options: Sequence[str], letters: Sequence[str] = LETTERS) -> str:
    """Options as the verification prompt shows them: 'A) ...' one per line."""
    return "\n".join(f"{x}) {o}" for x, o in zip(letters, options))
