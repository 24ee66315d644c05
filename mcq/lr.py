"""Learning-rate maths of the recipe, as pure functions of plain numbers."""
from __future__ import annotations

import math

SHAPES = ("cosine", "geometric", "constant")


def scaled_lr(base_lr: float, base_batch: int, batch: int) -> float:
    """Linear scaling rule: keep lr/batch of the pre-training recipe (1e-4 at 256 -> 1.76e-5 at 45)."""
    if base_batch <= 0 or batch <= 0:
        raise ValueError(f"batch sizes must be positive, got base_batch={base_batch}, batch={batch}")
    return base_lr * batch / base_batch


def effective_batch(per_device: int, accumulation: int, devices: int) -> int:
    """Questions per optimizer step: per-device batch x gradient accumulation x data-parallel devices."""
    return per_device * accumulation * devices


def layer_lr_factors(n_groups: int, shape: str, min_factor: float = 0.1, decay: float = 2.6) -> list[float]:
    """Per-group LR factors, bottom (embeddings) to top (head); the top group always gets 1.0.

    cosine:    min_factor at the bottom rising along half a cosine to 1.0 at the top;
    geometric: ULMFiT's rule, each group below gets the one above divided by `decay`;
    constant:  1.0 everywhere (plain fine-tuning).
    """
    if n_groups < 1:
        raise ValueError(f"need at least one group, got {n_groups}")
    if shape not in SHAPES:
        raise ValueError(f"unknown layer LR shape '{shape}'; choose one of {SHAPES}")
    if not 0.0 < min_factor <= 1.0:
        raise ValueError(f"min_factor must be in (0, 1], got {min_factor}")
    if n_groups == 1 or shape == "constant":
        return [1.0] * n_groups
    top = n_groups - 1
    if shape == "geometric":
        return [decay ** -(top - i) for i in range(n_groups)]
    return [min_factor + (1.0 - min_factor) * (1.0 - math.cos(math.pi * i / top)) / 2.0 for i in range(n_groups)]
