"""Pure ranking helpers shared by the retrievers: top k of a score matrix, reciprocal-rank fusion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RRF_K = 60  # the constant of Cormack et al. (2009); fusion is insensitive to it in 20-100


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the k highest scores of each row, best first; ties keep the lower index first.
    Rows shorter than k are padded with index -1 and score -inf."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    n_rows, n_cols = scores.shape
    take = min(k, n_cols)
    if take < n_cols:
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        # argpartition keeps an arbitrary few of the scores tied with the k-th best: keep the lowest indices
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        kept = (np.take_along_axis(scores, part, axis=1) == kth).sum(axis=1)
        for r in np.flatnonzero((scores == kth).sum(axis=1) > kept):
            above = np.flatnonzero(scores[r] > kth[r])
            part[r] = np.concatenate([above, np.flatnonzero(scores[r] == kth[r])[: take - len(above)]])
    else:
        part = np.tile(np.arange(n_cols), (n_rows, 1))
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    best = np.take_along_axis(picked, order, axis=1)
    if take < k:
        ids = np.pad(ids, ((0, 0), (0, k - take)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, k - take)), constant_values=-np.inf)
    return ids.astype(np.int64), best.astype(np.float32)


def reciprocal_rank_fusion(
    rankings: list[np.ndarray], k: int, constant: int = RRF_K, weights: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse per-retriever rankings (each [queries, depth] of passage ids, -1 = none) by summing
    weight / (constant + rank), rank counted from 1, weight 1 each by default; the k best fused ids per query,
    ties broken by the lower passage id. A retriever of weight 0 adds nothing."""
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings) or min(weights) < 0:
        raise ValueError(f"need one non-negative weight per ranking, got {weights} for {len(rankings)}")
    n_queries = rankings[0].shape[0]
    ids = np.full((n_queries, k), -1, dtype=np.int64)
    scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    for q in range(n_queries):
        fused: dict[int, float] = {}
        for ranking, weight in zip(rankings, weights):
            if weight == 0:
                continue
            for rank, pid in enumerate(ranking[q], start=1):
                if pid >= 0:
                    fused[int(pid)] = fused.get(int(pid), 0.0) + weight / (constant + rank)
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        for j, (pid, score) in enumerate(best):
            ids[q, j], scores[q, j] = pid, score
    return ids, scores
