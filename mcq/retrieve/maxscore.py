"""Exact top-k of a sum of sparse columns without reading every column whole (MaxScore, term at a time).

A BM25 query is the sum of its words' columns (one weight per passage holding the word). A question's words
are a few rare ones (short columns, large weights) and many common ones ("used", "also", "which": columns of a
third of the corpus, small weights). Each column's largest weight is known (saved with the index). Columns are
added whole, largest bound first, into a corpus-sized buffer; once the k-th best passage so far scores more than
everything the remaining columns could add, no passage outside those read can reach the top k, so the remaining
(long) columns are only looked up, by binary search, for the passages still in reach. Stopping at the first
moment that holds leaves nearly every passage read in reach (it needs only a sliver of the rest), so the runs
are summed until the rest could add at most half the k-th best score: then only passages already at half of
it are looked up (at 3M synthetic passages, twice as fast as stopping at once; docs/BENCHMARKS.md). The top k
equal exhaustive scoring's (tests compare them); only the work differs.

The bound is tightened by the index's layout: each column is stored as two runs, each ascending by passage,
its entries above half its largest weight first (a word repeated in a passage, or a short passage) and the
rest after them (most entries: a word once in a passage of average length). A run is summed or looked up as a
column of its own, with its own largest weight, so a common word's long low run is almost always only looked up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOOK_UP_BELOW = 0.5  # runs are summed whole until the rest could add at most this share of the k-th best score
SLACK = 1e-5  # bounds are float sums of float32 weights: widened so rounding never drops a passage in reach
FEW = 1 << 14  # a query with fewer postings than this is summed in one call: pruning would cost more than it saves
WATCH = 1 << 10  # passages whose k-th best score so far is the bar (any subset's k-th best is a lower bound)
HIGH = 0.5  # a column's entries above this share of its largest weight make its first run
SPLIT_FROM = 1 << 10  # shorter columns stay one run: they are read whole anyway, and a run costs a few calls


@dataclass(frozen=True)
class Columns:
    """A CSC matrix as bm25s saves it, each column two runs ascending by passage (split_runs; an index built
    before runs is one run a column: low_start = indptr[1:]), and the largest weight of each run [words, 2]."""

    indices: np.ndarray
    data: np.ndarray
    indptr: np.ndarray
    low_start: np.ndarray
    max_weight: np.ndarray

    @classmethod
    def unsplit(cls, indices: np.ndarray, data: np.ndarray, indptr: np.ndarray) -> Columns:
        """Columns of one run each (an index saved without runs), their largest weights read from the data."""
        top = max_weights(data, indptr)
        return cls(indices, data, indptr, np.asarray(indptr[1:]), np.stack([top, np.zeros_like(top)], axis=1))

    def runs(self, words: np.ndarray, repeats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(starts, ends, bounds, repeats) of these words' runs: the high runs, then the low ones."""
        starts = np.asarray(self.indptr[words], dtype=np.int64)
        middle = np.asarray(self.low_start[words], dtype=np.int64)
        ends = np.asarray(self.indptr[words + 1], dtype=np.int64)
        most = np.asarray(self.max_weight[words], dtype=np.float64)
        bounds = np.r_[most[:, 0], most[:, 1]] * np.r_[repeats, repeats]
        return np.r_[starts, middle], np.r_[middle, ends], bounds, np.r_[repeats, repeats]


def max_weights(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Each column's largest entry (0 for an empty column), read once in slices."""
    out = np.zeros(len(indptr) - 1, dtype=np.float32)
    filled = np.flatnonzero(np.diff(indptr) > 0)
    step = 1 << 20  # columns per slice: reduceat over a memory map reads it front to back
    for first in range(0, len(filled), step):
        cols = filled[first : first + step]
        lo, hi = int(indptr[cols[0]]), int(indptr[cols[-1] + 1])
        out[cols] = np.maximum.reduceat(np.asarray(data[lo:hi]), np.asarray(indptr[cols], dtype=np.int64) - lo)
    return out


def split_runs(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, budget: int = 1 << 22, split_from: int | None = None
):
    """Reorder each column of `split_from` entries or more in place into its two runs (entries above HIGH x its
    largest weight, then the rest; each ascending by passage, as it was), a few million entries at a time.
    Returns (where each column's low run starts, the largest weight of each run [words, 2])."""
    top = max_weights(data, indptr)
    low_start = np.array(indptr[1:], dtype=np.int64)
    low_max = np.zeros_like(top)
    first, n_cols = 0, len(indptr) - 1
    while first < n_cols:
        end = min(n_cols, max(first + 1, int(np.searchsorted(indptr, indptr[first] + budget, side="right")) - 1))
        lo, hi = int(indptr[first]), int(indptr[end])
        sizes = np.diff(indptr[first : end + 1])
        col = np.repeat(np.arange(end - first), sizes)
        weights = np.asarray(data[lo:hi])
        long = sizes >= (split_from or SPLIT_FROM)
        low = (weights <= np.float32(HIGH) * top[first:end][col]) & long[col]
        low_start[first:end] = indptr[first:end] + np.bincount(col[~low], minlength=end - first)
        np.maximum.at(low_max[first:end], col[low], weights[low])
        order = np.argsort(col * 2 + low, kind="stable")  # column by column, high run first, passages kept
        data[lo:hi], indices[lo:hi] = weights[order], np.asarray(indices[lo:hi])[order]
        first = end
    return low_start, np.stack([top, low_max], axis=1)


def kth_largest(values: np.ndarray, k: int) -> float:
    return float(np.partition(values, len(values) - k)[len(values) - k]) if len(values) >= k else -np.inf


def top_candidates(
    matrix: Columns, words: np.ndarray, repeats: np.ndarray, k: int, buffer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(passages ascending, their summed weights) of the columns `words` (each counted `repeats` times): every
    passage of the top k is there with its exact score, passages that cannot reach it mostly are not.
    `buffer` is a zeroed float32 array of one entry per passage, handed back zeroed."""
    starts, ends, bound, repeats = matrix.runs(words, repeats)
    order = np.argsort(-bound, kind="stable")
    order = order[ends[order] > starts[order]]
    starts, ends, repeats, bound = starts[order], ends[order], repeats[order], bound[order]
    if not len(order):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if int((ends - starts).sum()) <= FEW:
        return _summed(matrix, starts, ends, repeats, buffer)
    rest = np.r_[np.cumsum(bound[::-1])[::-1], 0.0] * (1 + SLACK) + SLACK  # rest[s]: the most runs s.. add
    reach = np.r_[0.0, np.cumsum(bound)]  # reach[s]: the most a passage scores from runs ..s
    threshold, read = -np.inf, 0
    try:
        for s in range(len(starts)):
            idx, w = _column(matrix, starts[s], ends[s], repeats[s])
            np.add.at(buffer, idx, w)  # NumPy 2's add.at: faster than buffer[idx] += w
            read = s + 1
            if s == 0:  # the heaviest word's best passages (any subset's k-th best is a lower bound)
                watch = idx[np.argpartition(-w, WATCH)[:WATCH]] if len(idx) > WATCH else idx
            if rest[read] >= reach[read]:
                continue  # no passage scores above what the rest could add yet: the bar cannot pass it
            threshold = max(threshold, kth_largest(buffer[watch], k))
            if len(idx) <= WATCH:  # a short column's own passages, scored so far
                threshold = max(threshold, kth_largest(buffer[idx], k))
            if rest[read] < LOOK_UP_BELOW * threshold:
                break
        found = _in_reach(matrix, starts[:read], ends[:read], buffer, threshold - rest[read])
        score = buffer[found]
    finally:
        _zero(matrix, starts[:read], ends[:read], buffer)
    for s in range(read, len(starts)):
        score = score + _looked_up(matrix, found, starts[s], ends[s], repeats[s], buffer)
        threshold = max(threshold, kth_largest(score, k))
        keep = score >= threshold - rest[s + 1]
        found, score = found[keep], score[keep]
    return found.astype(np.int64), score.astype(np.float32)


def _summed(
    matrix: Columns, starts: np.ndarray, ends: np.ndarray, repeats: np.ndarray, buffer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every passage of these runs and its summed weights: all postings gathered at once and added in run
    order (the same float sums as run by run)."""
    lengths = ends - starts
    at = np.repeat(starts - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(int(lengths.sum()))
    idx = np.asarray(matrix.indices[at])
    weights = np.asarray(matrix.data[at], dtype=np.float32) * np.repeat(repeats, lengths).astype(np.float32)
    try:
        np.add.at(buffer, idx, weights)
        found = np.unique(idx)
        score = buffer[found]
    finally:
        buffer[idx] = 0
    return found.astype(np.int64), score.astype(np.float32)


def _column(matrix: Columns, start: int, end: int, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    weights = np.asarray(matrix.data[start:end], dtype=np.float32)
    return np.asarray(matrix.indices[start:end]), weights * np.float32(repeat) if repeat != 1 else weights


def _few(starts: np.ndarray, ends: np.ndarray, buffer: np.ndarray) -> bool:
    """Whether these runs hold few enough entries that touching them beats a pass over the whole buffer (a pass
    is ~10x cheaper an entry than scattering)."""
    return int((ends - starts).sum()) * 8 <= len(buffer)


def _zero(matrix: Columns, starts: np.ndarray, ends: np.ndarray, buffer: np.ndarray) -> None:
    if not _few(starts, ends, buffer):
        buffer.fill(0)
        return
    for a, b in zip(starts, ends):
        buffer[matrix.indices[a:b]] = 0


def _in_reach(matrix: Columns, starts: np.ndarray, ends: np.ndarray, buffer: np.ndarray, least: float) -> np.ndarray:
    """The passages of these (already summed) columns scoring at least `least`, ascending."""
    if _few(starts, ends, buffer):
        idx = np.concatenate([np.asarray(matrix.indices[a:b]) for a, b in zip(starts, ends)])
        idx = idx[buffer[idx] >= least]
        if len(idx) * 32 <= len(buffer):  # few: sorting them beats a pass over the buffer
            return np.unique(idx)
    return np.flatnonzero(buffer >= least) if least > 0 else np.flatnonzero(buffer)


def _looked_up(
    matrix: Columns, found: np.ndarray, start: int, end: int, repeat: int, buffer: np.ndarray
) -> np.ndarray:
    """One column's weights at the passages `found` (ascending; 0 where the column has none): by binary search
    when they are few, else added into the buffer, read and taken out again."""
    if len(found) * max(1, int(end - start).bit_length()) < 3 * (end - start):
        column = matrix.indices[start:end]
        at = np.minimum(np.searchsorted(column, found), end - start - 1)
        hit = np.asarray(column[at]) == found
        out = np.zeros(len(found), dtype=np.float32)
        out[hit] = np.asarray(matrix.data[start + at[hit]], dtype=np.float32) * np.float32(repeat)
        return out
    idx, w = _column(matrix, start, end, repeat)
    buffer[idx] = w
    try:
        return buffer[found]  # fancy indexing copies: the buffer can be zeroed after
    finally:
        buffer[idx] = 0
