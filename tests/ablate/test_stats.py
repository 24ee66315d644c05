"""The ablation's statistics on numbers worked out by hand."""

import math

import pytest

from mcq.ablate.stats import paired, seed_stats


def test_seed_stats_use_the_sample_std():
    s = seed_stats([0.50, 0.52, 0.54])
    assert s.n == 3 and s.mean == pytest.approx(0.52)
    assert s.std == pytest.approx(0.02)  # sqrt(((-.02)^2 + 0 + .02^2) / 2)
    assert seed_stats([0.7]).std == 0.0


def test_paired_differences_and_t_test_by_hand():
    a = {0: 0.531, 1: 0.549, 2: 0.532}  # the plain fine-tune seeds
    b = {0: 0.504, 1: 0.526, 2: 0.505}  # and the recipe's
    p = paired("full", "recipe", a, b)
    assert p.seeds == [0, 1, 2]
    assert p.diffs == pytest.approx([-0.027, -0.023, -0.027])
    assert p.mean == pytest.approx(-0.025666, abs=1e-6)
    sd = math.sqrt(((-0.027 + 0.0256667) ** 2 * 2 + (-0.023 + 0.0256667) ** 2) / 2)
    assert p.std == pytest.approx(sd, rel=1e-4)
    t = p.mean / (sd / math.sqrt(3))
    assert p.t == pytest.approx(t, rel=1e-4)  # about -19.2: the same seed moves the same way in both
    assert p.p == pytest.approx(0.0027, abs=2e-4)  # two-sided, 2 degrees of freedom
    assert p.exceeds_noise
    # the seeds' own spread is ~0.01, so a difference of 0.026 that every seed shows is beyond it


def test_a_difference_smaller_than_the_seed_spread_is_within_noise():
    p = paired("a", "b", {0: 0.50, 1: 0.55, 2: 0.52}, {0: 0.53, 1: 0.52, 2: 0.53})
    assert p.diffs == pytest.approx([0.03, -0.03, 0.01])
    assert p.p is not None and p.p > 0.5 and not p.exceeds_noise
    assert p.noise > abs(p.mean)


def test_only_shared_seeds_are_paired_and_one_seed_gives_no_test():
    p = paired("a", "b", {0: 0.5, 1: 0.6}, {1: 0.7, 2: 0.1})
    assert p.seeds == [1] and p.diffs == pytest.approx([0.1])
    assert p.t is None and p.p is None and not p.exceeds_noise
    with pytest.raises(ValueError, match="share no finished seed"):
        paired("a", "b", {0: 0.5}, {1: 0.5})


def test_identical_shifts_on_every_seed_are_beyond_noise():
    p = paired("a", "b", {0: 0.5, 1: 0.6}, {0: 0.55, 1: 0.65})
    assert p.std == pytest.approx(0.0, abs=1e-12) or (p.p is not None and p.p < 1e-6)
    assert p.exceeds_noise
