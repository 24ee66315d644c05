"""Whether a difference in per-question scores is larger than the question set's own noise.

A paired bootstrap resamples the questions (the same ones for both sides) and reads the spread of the mean
difference; the ablation compares ensembles with it and the blend decides with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # a difference "exceeds the noise" when its two-sided p-value (or bootstrap interval) says so at 5 %


@dataclass(frozen=True)
class Bootstrap:
    """Mean difference b - a of per-question scores and its percentile interval over resampled questions."""

    mean: float
    low: float
    high: float
    draws: int

    @property
    def exceeds_noise(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(ap_a: np.ndarray, ap_b: np.ndarray, draws: int = 2000, seed: int = 0) -> Bootstrap:
    """Resample the questions (the same ones for both) to see how much of a difference the question set explains."""
    ap_a, ap_b = np.asarray(ap_a, dtype=np.float64), np.asarray(ap_b, dtype=np.float64)
    if ap_a.shape != ap_b.shape or ap_a.ndim != 1 or not len(ap_a):
        raise ValueError(f"need two equal-length score vectors, got {ap_a.shape} and {ap_b.shape}")
    diff = ap_b - ap_a
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(draws, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    return Bootstrap(float(diff.mean()), float(low), float(high), draws)
