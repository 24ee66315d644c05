"""Token-budget batching, pure maths: which sequences share a forward pass, and the padded width.

Used by prediction (pairs sorted by their own length) and by the GPU check; no tokenizer, no tensors.
"""

from __future__ import annotations

DEFAULT_BATCH_TOKENS = 16384  # padded tokens per forward pass; fits a T4 with DeBERTa-v3-large in fp16


def pad_to(length: int, multiple: int) -> int:
    """`length` rounded up to a multiple (tensor cores like multiples of 8)."""
    return -(-length // multiple) * multiple


def token_budget_batches(lengths: list[int], n_options: int, budget: int, multiple: int = 8) -> list[list[int]]:
    """Group question indices, longest first, so each padded batch holds at most `budget` tokens.

    A batch of b questions padded to length L computes b x n_options x pad_to(L) tokens; since the
    first question of a batch is its longest, L is known when the batch opens. A batch also closes
    where the padded width steps down, so nothing is padded by more than `multiple` - 1 tokens.
    A single question over the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            width = pad_to(lengths[batches[-1][0]], multiple)
            fits = (len(batches[-1]) + 1) * n_options * width <= budget
            if fits and pad_to(lengths[i], multiple) == width:
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches
