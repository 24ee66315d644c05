"""Seed statistics of an ablation, as pure functions of plain numbers.

Seeds are the noise a user can measure: two variants trained on the same seeds differ seed by seed, and a
paired t-test on those differences says whether the mean difference is larger than the seed-to-seed spread.
The ensembles, one number per variant, are compared with a paired bootstrap over the questions instead
(`mcq.core.significance`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mcq.core.significance import ALPHA


@dataclass(frozen=True)
class SeedStats:
    """Mean and sample standard deviation (n - 1) of one variant's per-seed scores; std is 0 for one seed."""

    n: int
    mean: float
    std: float


def seed_stats(scores: Sequence[float]) -> SeedStats:
    if not scores:
        raise ValueError("no scores")
    values = np.asarray(scores, dtype=np.float64)
    return SeedStats(len(values), float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class Paired:
    """Variant b minus variant a on the seeds both have: per-seed differences and a paired t-test."""

    a: str
    b: str
    seeds: list[int]
    diffs: list[float]
    mean: float
    std: float  # sample std of the differences (0 with one seed)
    noise: float  # seed-to-seed std of the scores, pooled over the two variants
    t: float | None  # None: fewer than two seeds, or identical differences
    p: float | None
    exceeds_noise: bool  # p < ALPHA; never with fewer than two seeds


def paired(a: str, b: str, scores_a: Mapping[int, float], scores_b: Mapping[int, float]) -> Paired:
    """Compare two variants seed by seed (only the seeds both finished)."""
    seeds = sorted(set(scores_a) & set(scores_b))
    if not seeds:
        raise ValueError(f"{a} and {b} share no finished seed")
    diffs = np.array([scores_b[s] - scores_a[s] for s in seeds], dtype=np.float64)
    mean = float(diffs.mean())
    std = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
    noise = math.sqrt(
        (seed_stats([scores_a[s] for s in seeds]).std ** 2 + seed_stats([scores_b[s] for s in seeds]).std ** 2) / 2
    )
    t = p = None
    if len(diffs) > 1 and std > 0:
        t = mean / (std / math.sqrt(len(diffs)))
        p = float(2 * stats.t.sf(abs(t), df=len(diffs) - 1))
    elif len(diffs) > 1 and mean != 0:  # every seed moved by exactly the same amount: no spread at all
        t, p = math.copysign(math.inf, mean), 0.0
    return Paired(a, b, seeds, diffs.tolist(), mean, std, noise, t, p, p is not None and p < ALPHA)
