"""Scoring and ensembling maths: MAP@k as Kaggle computes it, ranking with empty options last, mean of logits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k(logits: np.ndarray, k: int = 3) -> np.ndarray:
    """Indices of the k highest scores per row, best first; ties go to the earlier option (stable)."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def top_k_letters(logits: np.ndarray, letters: Sequence[str], k: int = 3) -> list[str]:
    """Submission strings such as 'D A C' for each row of logits."""
    return [" ".join(letters[j] for j in row) for row in top_k(logits, k)]


def average_precision_at_k(ranked: np.ndarray, answers: Sequence[int], k: int = 3) -> np.ndarray:
    """Each question's average precision at k with one correct answer: 1/rank if within the top k, else 0; as
    Kaggle's metric for this competition, a repeated prediction after the correct one does not count."""
    ranked = np.asarray(ranked)[:, :k]
    truth = np.asarray(answers)
    if len(ranked) != len(truth):
        raise ValueError(f"{len(ranked)} predictions for {len(truth)} answers")
    if len(truth) == 0:
        raise ValueError("no questions to score")
    hits = ranked == truth[:, None]
    return np.where(hits.any(axis=1), 1.0 / (hits.argmax(axis=1) + 1), 0.0)


def map_at_k(ranked: np.ndarray, answers: Sequence[int], k: int = 3) -> float:
    """Mean average precision at k: the mean of `average_precision_at_k`."""
    return float(average_precision_at_k(ranked, answers, k).mean())


def empty_options(options: Sequence[Sequence[str]]) -> np.ndarray:
    """True where an option is empty: it can never be the answer."""
    return np.array([[not text for text in opts] for opts in options], dtype=bool)


def rank_logits(logits: np.ndarray, options: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """Logits for ranking: an empty option can never be the answer, so it goes behind every real one."""
    ranked = np.asarray(logits, dtype=np.float64).copy()
    if options is not None:
        ranked[empty_options(options)] = -np.inf
    return ranked


def question_ap(
    logits: np.ndarray, answers: Sequence[int], options: Sequence[Sequence[str]] | None = None
) -> np.ndarray:
    """Each question's average precision at 3 (1, 1/2, 1/3 or 0), ranked as the submission ranks them."""
    return average_precision_at_k(top_k(rank_logits(logits, options), 3), answers, 3)


def map3_score(logits: np.ndarray, answers: Sequence[int], options: Sequence[Sequence[str]] | None = None) -> float:
    """MAP@3 of logits ranked as the submission ranks them (empty options last): the one scorer of
    training, inference and the tests."""
    return float(question_ap(logits, answers, options).mean())


def chance_map3(n_options: int) -> float:
    """MAP@3 of a random ranking: each of the first three ranks holds the answer with probability 1/n."""
    return sum(1 / r for r in range(1, min(3, n_options) + 1)) / n_options


def mean_logits(logits: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of several models' logits (equal weights by default); weights are normalised."""
    if not logits:
        raise ValueError("no logits to ensemble")
    stack = np.stack([np.asarray(x, dtype=np.float64) for x in logits])
    if weights is None:
        weights = [1.0] * len(logits)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(logits),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"need {len(logits)} finite non-negative weights with a positive sum, got {list(weights)}")
    return np.tensordot(w / w.sum(), stack, axes=1)
