"""Option-rotation test-time augmentation: score each question with its options rotated, map every rotation's
logits back to the original letters and average them, so a model's preference for a position averages out.

Rotation by `shift` puts original option (j + shift) % n at position j; the averaged logits are in the original
option order, so `rank_logits(logits, questions.options)` still puts empty options last.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcq.core.data import Questions
from mcq.errors import ConfigError


def check_rotations(n_rotations: int, n_options: int, source: str = "the test file") -> None:
    """Between 1 and the number of options: more rotations than options would repeat one."""
    if not 1 <= n_rotations <= n_options:
        raise ConfigError(
            f"--tta-rotations {n_rotations}: {source} has {n_options} options, so 1 to {n_options} rotations "
            f"are possible; give --tta-rotations between 1 and {n_options}."
        )


def rotation_shifts(n_rotations: int, n_options: int) -> list[int]:
    """n_rotations distinct shifts spread evenly over the options, 0 (the file's own order) first."""
    check_rotations(n_rotations, n_options)
    # consecutive values differ by n_options / n_rotations >= 1, so the floors are distinct
    return [r * n_options // n_rotations for r in range(n_rotations)]


def rotate_row(row: list, shift: int) -> list:
    """The row with position j holding item (j + shift) % n."""
    shift %= len(row)
    return row[shift:] + row[:shift]


def rotate_questions(questions: Questions, shift: int) -> Questions:
    """The same questions (ids, prompts, contexts) with their options rotated and answers following them."""
    n = len(questions.letters)
    answers = None if questions.answers is None else [(a - shift) % n for a in questions.answers]
    options = [rotate_row(opts, shift) for opts in questions.options]
    return dataclasses.replace(questions, options=options, answers=answers)


def stack_rotations(questions: Questions, shifts: list[int]) -> Questions:
    """One question set holding every rotation, rotation-major: scored in one pass (each model loads once)."""
    parts = [rotate_questions(questions, s) for s in shifts]
    return Questions(
        source=questions.source if shifts == [0] else f"{questions.source} (options rotated by {shifts})",
        ids=[i for p in parts for i in p.ids],
        prompts=[x for p in parts for x in p.prompts],
        options=[x for p in parts for x in p.options],
        letters=questions.letters,
        contexts=None if questions.contexts is None else [x for p in parts for x in p.contexts or []],
        answers=None if questions.answers is None else [x for p in parts for x in p.answers or []],
        generated_ids=questions.generated_ids,
    )


def unrotate_logits(logits: np.ndarray, shift: int) -> np.ndarray:
    """Logits of options rotated by `shift`, back in the original option order."""
    return np.roll(np.asarray(logits), shift, axis=1)


def average_rotations(stacked: np.ndarray, shifts: list[int]) -> np.ndarray:
    """The mean over rotations of the logits of `stack_rotations`, in the original option order."""
    blocks = np.split(np.asarray(stacked, dtype=np.float64), len(shifts))
    return np.mean([unrotate_logits(b, s) for b, s in zip(blocks, shifts)], axis=0).astype(np.float32)
