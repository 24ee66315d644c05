"""The resumable output of a generation run: request slots with stable ids, rows appended and synced one
by one, the `.progress.jsonl` sidecar, and reading both back to resume."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from mcq.core.data import Questions, read_questions
from mcq.errors import GenerateError
from mcq.generate.checks import LETTERS
from mcq.generate.inputs import Passage

# The tool's logger name (`python -m mcq.generate`): the one users see in its output and filter on.
log = logging.getLogger("mcq.generate")


@dataclass(frozen=True)
class Slot:
    """One request: question `number` (1-based, of `total`) on `passage`; `id` is stable across reruns."""

    id: str
    number: int
    total: int
    passage: Passage | None

    @property
    def seed(self) -> int:
        return int(self.id.removeprefix("gen-")[:8], 16)


def slot_id(model: str, seed: int, passage_text: str, number: int) -> str:
    """A deterministic id from what defines the request, so a rerun recognises its own rows."""
    digest = hashlib.sha1(f"{model}\0{seed}\0{passage_text}\0{number}".encode()).hexdigest()
    return f"gen-{digest[:16]}"


def plan_slots(passages: list[Passage] | None, n: int, n_questions: int, model: str, seed: int) -> list[Slot]:
    """Every request of the run: n per passage, or n_questions when there are no passages."""
    if not passages:
        return [Slot(slot_id(model, seed, "", q), q, n_questions, None) for q in range(1, n_questions + 1)]
    return [Slot(slot_id(model, seed, p.text, q), q, n, p) for p in passages for q in range(1, n + 1)]


def output_columns(with_context: bool) -> list[str]:
    return ["id", "prompt", *LETTERS, "answer", "source"] + (["context"] if with_context else [])


def sidecar(out: Path, suffix: str) -> Path:
    """`out` with `suffix` appended: generated.csv -> generated.csv.progress.jsonl."""
    return out.with_name(out.name + suffix)


class AppendFile:
    """A file that each line (or CSV row) is appended to, flushed and synced, so a crash loses nothing kept."""

    def __init__(self, path: Path, header: str = ""):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 (held open for the run; closed by close())
        if header and self._file.tell() == 0:
            self.write(header)
        elif self._file.tell() and not _ends_with_newline(path):
            self.write("\n")  # a line torn by a crash: the next record starts on a line of its own

    def write(self, text: str) -> int:
        """Append text; return the file size in bytes after it."""
        self._file.write(text.encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def format_row(row: dict, columns: list[str], fmt: str) -> str:
    """One output record as text: a CSV line or a JSON line. Line breaks in cells become '\\n' (the csv
    writer leaves a lone '\\r' unquoted, and a reader would end the row there)."""
    values = [_one_newline(row[c]) for c in columns]
    if fmt == "jsonl":
        return json.dumps(dict(zip(columns, values)), ensure_ascii=False) + "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _one_newline(value):
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


@dataclass
class ResumeState:
    """What earlier runs into the same output left: attempted slot ids, kept prompts, key-letter counts."""

    done: set[str] = field(default_factory=set)
    prompts: list[str] = field(default_factory=list)
    key_counts: list[int] = field(default_factory=lambda: [0] * len(LETTERS))
    rows: int = 0


def read_progress(path: Path) -> list[dict]:
    """Records of the progress sidecar; a torn last line (a crash mid-write) is skipped."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            log.warning("%s: line %d unreadable (a crash mid-write?); that slot will be retried", path, number)
    return records


def load_resume_state(out: Path, columns: list[str]) -> ResumeState:
    """Read an earlier run's output and progress; cut any row written after the last recorded one."""
    progress = read_progress(sidecar(out, ".progress.jsonl"))
    state = ResumeState(done={r["id"] for r in progress if "id" in r})
    if not out.is_file():
        if state.done:
            log.warning(
                "%s is missing but %s records %d attempted slot(s): they are not redone. To start over, "
                "delete that file too.",
                out,
                sidecar(out, ".progress.jsonl"),
                len(state.done),
            )
        return state
    offsets = [r["offset"] for r in progress if r.get("status") == "accepted" and isinstance(r.get("offset"), int)]
    _cut_unrecorded_tail(out, max(offsets, default=None))
    questions = _read_output(out, columns)
    if questions is not None:
        state.done |= set(questions.ids)
        state.prompts = list(questions.prompts)
        state.rows = len(questions)
        assert questions.answers is not None  # _read_output reads with require_answer=True
        for a in questions.answers:
            state.key_counts[a] += 1
    return state


def _cut_unrecorded_tail(out: Path, last_offset: int | None) -> None:
    """Drop bytes after the last recorded row (written but unrecorded, or torn by a crash): that slot is redone."""
    size = out.stat().st_size
    if last_offset is not None and last_offset > size:
        log.warning(
            "%s: shorter (%d bytes) than its progress file records (%d): edited or recreated? Keeping its "
            "complete lines",
            out,
            size,
            last_offset,
        )
        last_offset = None
    if last_offset is None:
        with open(out, "rb") as f:  # nothing recorded: only a torn last line can be told apart
            data = f.read()
        last_offset = data.rfind(b"\n") + 1 if data and not data.endswith(b"\n") else size
    if size > last_offset:
        log.warning("%s: dropping %d byte(s) written after the last recorded row", out, size - last_offset)
        os.truncate(out, last_offset)


def _read_output(out: Path, columns: list[str]) -> Questions | None:
    text = out.read_text(encoding="utf-8")
    if out.suffix.lower() == ".csv":
        header = next(csv.reader(io.StringIO(text)), [])
        if header and header != columns:
            raise GenerateError(
                f"{out}: exists with columns {header}, this run writes {columns}. "
                "Use another --out, or the same --write-context as the run that made it."
            )
        if len(text.splitlines()) <= 1:
            return None
    elif not text.strip():
        return None
    questions = read_questions(out, require_answer=True)
    if questions.letters != LETTERS:
        raise GenerateError(f"{out}: has options {''.join(questions.letters)}, not A-E; use another --out")
    return questions
