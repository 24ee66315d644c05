"""Learning-rate maths of the recipe, as pure functions of plain numbers.

The LR of layer group g at optimizer step s of a phase is, in one formula (`lr_at`):
    top_lr x LayerRule.factors(n_groups)[g] x schedule_factor(schedule, s, total_steps, warmup_steps)
which is what runs: the optimizer groups (`train.optim`) carry top_lr x factor and RecipeTrainer's scheduler
(`train.trainer`) is a LambdaLR over `schedule_factor`. The top LR is derived in `train.phases.derive_lr`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SHAPES = ("cosine", "geometric", "constant")
SCHEDULES = ("constant", "linear")


def scaled_lr(base_lr: float, base_batch: int, batch: int) -> float:
    """Linear scaling rule: keep lr/batch of the pre-training recipe (1e-4 at 256 -> 1.76e-5 at 45)."""
    if base_batch <= 0 or batch <= 0:
        raise ValueError(f"batch sizes must be positive, got base_batch={base_batch}, batch={batch}")
    return base_lr * batch / base_batch


def effective_batch(per_device: int, accumulation: int, devices: int) -> int:
    """Questions per optimizer step: per-device batch x gradient accumulation x data-parallel devices."""
    return per_device * accumulation * devices


def layer_lr_factors(n_groups: int, shape: str, min_factor: float = 0.1, decay: float = 2.6) -> list[float]:
    """Per-group LR factors, bottom (embeddings) to top (head); the top group always gets 1.0."""
    if n_groups < 1:
        raise ValueError(f"need at least one group, got {n_groups}")
    if shape not in SHAPES:
        raise ValueError(f"unknown layer LR shape '{shape}'; choose one of {SHAPES}")
    if not 0.0 < min_factor <= 1.0:
        raise ValueError(f"min_factor must be in (0, 1], got {min_factor}")
    if n_groups == 1 or shape == "constant":
        return [1.0] * n_groups  # constant: 1.0 everywhere (plain fine-tuning)
    top = n_groups - 1
    if shape == "geometric":  # ULMFiT's rule: each group below gets the one above divided by `decay`
        return [decay ** -(top - i) for i in range(n_groups)]
    # cosine: min_factor at the bottom rising along half a cosine to 1.0
    return [min_factor + (1.0 - min_factor) * (1.0 - math.cos(math.pi * i / top)) / 2.0 for i in range(n_groups)]


@dataclass(frozen=True)
class LayerRule:
    """How one top LR becomes one LR per layer group (bottom to top); the default is plain fine-tuning."""

    shape: str = "constant"
    min_factor: float = 0.1
    decay: float = 2.6

    def factors(self, n_groups: int) -> list[float]:
        return layer_lr_factors(n_groups, self.shape, self.min_factor, self.decay)


def warmup_steps_for(warmup: float, total_steps: int) -> int:
    """Warm-up steps as transformers 5 reads `warmup_steps`: a count when >= 1, else a ratio of the steps."""
    return int(warmup) if warmup >= 1 else math.ceil(total_steps * warmup)


def schedule_factor(schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of every group's LR at `step`: constant, or linear warm-up then linear decay to 0
    (transformers' get_linear_schedule_with_warmup)."""
    if schedule == "constant":
        return 1.0
    if schedule != "linear":
        raise ValueError(f"unknown schedule '{schedule}'; choose one of {SCHEDULES}")
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def lr_at(top_lr: float, factor: float, schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """The LR a layer group with this factor gets at `step` of a phase."""
    return top_lr * factor * schedule_factor(schedule, step, total_steps, warmup_steps)


def mean_lr(lrs: list[float], counts: list[int]) -> float:
    """The LR averaged over parameters (each group's LR weighted by its parameter count): how fast the model
    as a whole learns. Cosine from 0.1 gives about 0.55 of the top LR whatever the depth."""
    total = sum(counts)
    if total <= 0:
        raise ValueError("no parameters to average over")
    return sum(lr * n for lr, n in zip(lrs, counts)) / total
