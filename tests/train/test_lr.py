"""The LR maths of the recipe, checked against numbers worked out by hand."""
import math

import pytest

from mcq.train.lr import effective_batch, layer_lr_factors, scaled_lr


def test_scaled_lr_matches_the_brief():
    # 1e-4 at batch 256 in pre-training -> 1e-4 / 256 * 45 = 1.7578e-5 at batch 45
    assert scaled_lr(1e-4, 256, 45) == pytest.approx(1.7578125e-5)
    assert scaled_lr(1e-4, 256, 256) == pytest.approx(1e-4)


def test_scaled_lr_rejects_non_positive_batches():
    with pytest.raises(ValueError):
        scaled_lr(1e-4, 0, 45)
    with pytest.raises(ValueError):
        scaled_lr(1e-4, 256, 0)


def test_effective_batch_multiplies_device_accumulation_and_devices():
    assert effective_batch(9, 5, 1) == 45
    assert effective_batch(8, 2, 4) == 64


def test_cosine_runs_from_min_to_one_along_half_a_cosine():
    f = layer_lr_factors(5, "cosine", min_factor=0.2)
    # i/top = 0, .25, .5, .75, 1 -> (1 - cos(pi x)) / 2 = 0, 0.1464, 0.5, 0.8536, 1
    expected = [0.2, 0.2 + 0.8 * (1 - math.cos(math.pi / 4)) / 2, 0.6, 0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2, 1.0]
    assert f == pytest.approx(expected)
    assert f[2] == pytest.approx(0.6)
    assert all(a < b for a, b in zip(f, f[1:])), "cosine factors must rise bottom to top"


def test_geometric_is_ulmfit_division_by_2_6_per_group():
    f = layer_lr_factors(4, "geometric", decay=2.6)
    assert f == pytest.approx([1 / 2.6**3, 1 / 2.6**2, 1 / 2.6, 1.0])


def test_constant_and_single_group():
    assert layer_lr_factors(3, "constant") == [1.0, 1.0, 1.0]
    assert layer_lr_factors(1, "cosine") == [1.0]


def test_deberta_large_has_26_groups_from_min_to_full():
    f = layer_lr_factors(26, "cosine", min_factor=0.1)  # embeddings + 24 layers + head
    assert len(f) == 26 and f[0] == pytest.approx(0.1) and f[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("args", [(0, "cosine"), (3, "linear"), (3, "cosine", 0.0), (3, "cosine", 1.5)])
def test_bad_arguments_raise(args):
    with pytest.raises(ValueError):
        layer_lr_factors(*args)
