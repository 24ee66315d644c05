"""The LR maths of the recipe, checked against numbers worked out by hand."""

import math

import pytest

from mcq.train.lr import (
    LayerRule,
    effective_batch,
    layer_lr_factors,
    lr_at,
    mean_lr,
    scaled_lr,
    schedule_factor,
    warmup_steps_for,
)


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
    expected = [
        0.2,
        0.2 + 0.8 * (1 - math.cos(math.pi / 4)) / 2,
        0.6,
        0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2,
        1.0,
    ]
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


def test_layer_rule_is_the_factors_of_its_shape():
    assert LayerRule().factors(3) == [1.0, 1.0, 1.0]  # the default is plain fine-tuning
    assert LayerRule("geometric", decay=2.0).factors(3) == pytest.approx([0.25, 0.5, 1.0])
    assert LayerRule("cosine", min_factor=0.2).factors(3) == pytest.approx([0.2, 0.6, 1.0])


def test_warmup_steps_read_as_transformers_5_reads_them():
    assert warmup_steps_for(0.1, 95) == 10  # a ratio below 1: ceil(9.5)
    assert warmup_steps_for(0.0, 95) == 0
    assert warmup_steps_for(7, 95) == 7  # 1 or more: a step count


def test_linear_schedule_by_hand():
    # 10 steps, 2 of warm-up: 0, 0.5, then (10 - s) / 8 down to 0
    assert [schedule_factor("linear", s, 10, 2) for s in (0, 1, 2, 6, 10, 12)] == pytest.approx(
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    )
    assert schedule_factor("constant", 7, 10, 2) == 1.0
    with pytest.raises(ValueError):
        schedule_factor("cosine", 0, 10, 2)


def test_linear_schedule_is_transformers_own():
    torch = pytest.importorskip("torch")
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=17)
    for step in range(20):
        assert schedule_factor("linear", step, 17, 3) == pytest.approx(scheduler.get_last_lr()[0]), step
        opt.step()
        scheduler.step()


def test_lr_at_is_top_times_layer_factor_times_schedule():
    # group 0 of 3 under cosine 0.2 has factor 0.2; at step 1 of 10 with 2 warm-up steps the schedule gives 0.5
    assert lr_at(1e-3, 0.2, "linear", 1, 10, 2) == pytest.approx(1e-4)
    assert lr_at(1e-3, 1.0, "constant", 5, 10, 2) == pytest.approx(1e-3)


def test_mean_lr_weights_each_group_by_its_parameters():
    assert mean_lr([1.0, 0.5], [1, 3]) == pytest.approx(0.625)  # (1 x 1 + 0.5 x 3) / 4
    with pytest.raises(ValueError):
        mean_lr([1.0], [0])


@pytest.mark.parametrize("n_groups", [8, 26])
def test_cosine_from_a_tenth_averages_0_55_of_the_top_lr_at_any_depth(n_groups):
    # the half cosine is symmetric about its middle, so equal groups average 0.1 + 0.9 / 2
    factors = layer_lr_factors(n_groups, "cosine", 0.1)
    assert mean_lr(factors, [1] * n_groups) == pytest.approx(0.55)
