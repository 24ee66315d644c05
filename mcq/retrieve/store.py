"""The passages of an index on disk: one JSON line each, and their byte offsets for random access.

The texts stay on disk (read by seek), so a large corpus costs 8 bytes of memory a passage to serve.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mcq.errors import RetrievalError
from mcq.retrieve.corpus import Passage

PASSAGES = "passages.jsonl"
OFFSETS = "passages.offsets.npy"


class PassageWriter:
    """Append passages in order; `close` writes the offsets file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._handle = (folder / PASSAGES).open("wb")
        self._offsets: list[int] = [0]

    def add(self, passage: Passage) -> int:
        line = json.dumps({"doc": passage.doc, "title": passage.title, "text": passage.text}, ensure_ascii=False)
        self._handle.write(line.encode("utf-8") + b"\n")
        self._offsets.append(self._handle.tell())
        return len(self._offsets) - 2

    def close(self) -> int:
        self._handle.close()
        np.save(self.folder / OFFSETS, np.asarray(self._offsets, dtype=np.int64))
        return len(self._offsets) - 1


class PassageStore:
    """Read passages by number from an index folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        for name in (PASSAGES, OFFSETS):
            if not (self.folder / name).is_file():
                raise RetrievalError(f"{self.folder}: no {name}; the index is incomplete, build it again")
        self.offsets = np.load(self.folder / OFFSETS, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, numbers: list[int]) -> list[Passage]:
        out = []
        with (self.folder / PASSAGES).open("rb") as handle:
            for n in numbers:
                handle.seek(int(self.offsets[n]))
                out.append(_passage(handle.read(int(self.offsets[n + 1] - self.offsets[n]))))
        return out

    def __iter__(self) -> Iterator[Passage]:
        with (self.folder / PASSAGES).open("rb") as handle:
            for line in handle:
                yield _passage(line)


def _passage(line: bytes) -> Passage:
    record = json.loads(line)
    return Passage(record["doc"], record["title"], record["text"])
