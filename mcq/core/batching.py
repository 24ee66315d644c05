"""Token-budget batching, pure maths: which sequences share a forward pass, and the padded width.

Used by prediction (pairs sorted by their own length) and by the GPU check; no tokenizer, no tensors.
"""

from __future__ import annotations

DEFAULT_BATCH_TOKENS = 16384  # padded tokens per forward pass; fits a T4 with DeBERTa-v3-large in fp16
PAD_MULTIPLE = 8  # padded widths are multiples of 8 (tensor cores), in training and prediction alike


def pad_to(length: int, multiple: int = PAD_MULTIPLE) -> int:
    """`length` rounded up to a multiple (tensor cores like multiples of 8)."""
    return -(-length // multiple) * multiple


def token_budget_batches(
    lengths: list[int], n_options: int, budget: int, multiple: int = PAD_MULTIPLE
) -> list[list[int]]:
    """Group question indices, longest first, so each padded batch holds at most `budget` tokens;
    a single question over the budget still gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            # a batch's first question is its longest, so its padded length L is known when the batch opens
            width = pad_to(lengths[batches[-1][0]], multiple)
            # b questions padded to length L compute b x n_options x pad_to(L) tokens
            fits = (len(batches[-1]) + 1) * n_options * width <= budget
            # also close where the padded width steps down, so nothing is padded by more than `multiple` - 1 tokens
            if fits and pad_to(lengths[i], multiple) == width:
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches
