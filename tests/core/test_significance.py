"""The per-question scores and the paired bootstrap that ablations and blends decide with, on hand-made numbers."""

import numpy as np
import pytest

from mcq.core.metrics import map3_score, question_ap
from mcq.core.significance import paired_bootstrap


def test_question_ap_is_one_over_rank_and_skips_empty_options():
    logits = np.array([[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0], [0.0, 5.0, 1.0, 2.0]])
    answers = [0, 2, 3, 2]
    options = [["a", "b", "c", "d"], ["a", "", "c", "d"], ["a", "b", "c", "d"], ["a", "b", "c", "d"]]
    # q1: answer first -> 1; q2: 'b' is empty so c is second -> 1/2; q3: d is fourth -> 0; q4: c is third -> 1/3
    assert question_ap(logits, answers, options) == pytest.approx([1.0, 0.5, 0.0, 1 / 3])
    assert map3_score(logits, answers, options) == pytest.approx((1.0 + 0.5 + 0.0 + 1 / 3) / 4)


def test_bootstrap_interval_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(1)
    a = rng.choice([0.0, 1 / 3, 0.5, 1.0], size=400)
    better = np.where(rng.random(400) < 0.3, 1.0, a)  # b = a with 30 % of questions made right
    boot = paired_bootstrap(a, better, draws=1000)
    assert boot.mean == pytest.approx((better - a).mean())
    assert boot.low > 0 and boot.exceeds_noise
    same = paired_bootstrap(a, rng.permutation(a), draws=1000)  # same scores, shuffled over questions
    assert same.low < 0 < same.high and not same.exceeds_noise
    with pytest.raises(ValueError):
        paired_bootstrap(a, a[:10])
