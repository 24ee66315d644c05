"""bm25s' score matrix (Lucene BM25, CSC: one column per word) built in two streaming passes over token ids on
disk, so the build's memory is the finished matrix plus one chunk, whatever the corpus size.

bm25s' own `BM25.index` holds every passage's token ids as Python lists and sorts all (term, passage) pairs as
int64 keys at once (3.3 GB at 1M passages, projected 19 GB at 6M). Here the token ids go to a file as they are
made; pass 1 counts each word's passages (the column sizes), pass 2 writes each chunk's scores straight into
their columns. Passages are visited in order, so each column comes out sorted by passage, as scipy's CSC does.
The arrays equal bm25s' (tests compare them) and are saved in its format, so `BM25.load` reads them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

K1, B = 1.5, 0.75  # bm25s' defaults (method lucene)
CHUNK_TOKENS = 2_000_000  # token ids per pass step (8 MB of int32, ~150 MB of temporaries)


class TokenSpool:
    """Token ids of each passage appended to a file; only the passage lengths stay in memory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.handle = self.path.open("wb")
        self.lengths: list[int] = []

    def add(self, ids: np.ndarray) -> None:
        self.handle.write(np.asarray(ids, dtype=np.int32).tobytes())
        self.lengths.append(len(ids))

    def close(self) -> tuple[SpooledTokens, np.ndarray]:
        """(all token ids, read from the file a slice at a time; passage lengths)."""
        self.handle.close()
        return SpooledTokens(self.path), np.asarray(self.lengths, dtype=np.int64)


class SpooledTokens:
    """Token ids on disk, sliced by reading (not memory-mapping: a map's pages stay resident and count as the
    build's memory until the kernel needs them back)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __getitem__(self, span: slice) -> np.ndarray:
        start, stop = span.start or 0, span.stop
        return np.fromfile(self.path, dtype=np.int32, count=stop - start, offset=4 * start)


def _chunks(lengths: np.ndarray, budget: int = CHUNK_TOKENS):
    """(first passage, end passage, first token, end token) of consecutive passages holding ~budget tokens."""
    ends = np.cumsum(lengths)
    first, start = 0, 0
    while first < len(lengths):
        end = int(np.searchsorted(ends, start + budget, side="right"))
        end = max(end, first + 1)
        stop = int(ends[end - 1])
        yield first, end, start, stop
        first, start = end, stop


def _pairs(tokens: np.ndarray | SpooledTokens, lengths: np.ndarray, first: int, end: int, start: int, stop: int):
    """The distinct (passage, word) pairs of a chunk, passage-major, with each word's count in its passage."""
    passage = np.repeat(np.arange(first, end, dtype=np.int64), lengths[first:end])
    keys = (passage << 32) | np.asarray(tokens[start:stop], dtype=np.int64)
    keys, counts = np.unique(keys, return_counts=True)
    return (keys >> 32), (keys & 0xFFFFFFFF), counts


def bm25_matrix(
    tokens: np.ndarray | SpooledTokens, lengths: np.ndarray, n_vocab: int, k1: float = K1, b: float = B
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data float32, indices int32, indptr) of the passages x words BM25 matrix in CSC order, as bm25s builds
    it: score = idf(word) * tf / (k1 * (1 - b + b * len / avg_len) + tf), idf = ln(1 + (N - df + 0.5) / (df + 0.5))."""
    n_docs = len(lengths)
    avg = float(lengths.mean()) if n_docs else 1.0
    df = np.zeros(n_vocab, dtype=np.int64)
    for first, end, start, stop in _chunks(lengths):  # pass 1: in how many passages each word occurs
        _, words, _ = _pairs(tokens, lengths, first, end, start, stop)
        df += np.bincount(words, minlength=n_vocab)
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    idf = np.asarray([math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) if d else 0.0 for d in df], dtype=np.float32)
    data = np.empty(int(indptr[-1]), dtype=np.float32)
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    fill = indptr[:-1].copy()  # the next free slot of each column
    for first, end, start, stop in _chunks(lengths):  # pass 2: each chunk's scores into their columns
        passages, words, counts = _pairs(tokens, lengths, first, end, start, stop)
        order = np.argsort(words, kind="stable")  # word-major; passages stay ascending within a word
        passages, words, counts = passages[order], words[order], counts[order]
        starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
        rank = np.arange(len(words)) - np.repeat(starts, np.diff(np.r_[starts, len(words)]))
        slots = fill[words] + rank
        tf = counts.astype(np.float32)
        norm = k1 * ((1 - b) + b * lengths[passages] / avg)
        data[slots] = idf[words] * (tf / (norm + tf))
        indices[slots] = passages
        fill[words[starts]] += np.diff(np.r_[starts, len(words)])
    return data, indices, indptr
