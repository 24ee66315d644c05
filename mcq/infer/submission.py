"""The competition submission: `id,prediction` with three distinct letters, best first, checked before writing.
(A question set with fewer than three options gets all its letters, best first.)"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pandas as pd

from mcq.core.metrics import rank_logits, top_k_letters
from mcq.errors import SubmissionError
from mcq.io import atomic_write


def predicted_letters(letters: Sequence[str]) -> int:
    """Letters per prediction: three (MAP@3), or every option when there are fewer."""
    return min(3, len(letters))


def make_submission(ids: Sequence[str], logits: np.ndarray, letters: Sequence[str], options) -> pd.DataFrame:
    """The submission frame in the test file's row order."""
    k = predicted_letters(letters)
    return pd.DataFrame({"id": list(ids), "prediction": top_k_letters(rank_logits(logits, options), letters, k)})


def validate_submission(frame: pd.DataFrame, ids: Sequence[str], letters: Sequence[str]) -> None:
    """Every test id exactly once, in order, each with three distinct letters from the test's options."""
    if list(frame.columns) != ["id", "prediction"]:
        raise SubmissionError(f"columns are {list(frame.columns)}, expected ['id', 'prediction']")
    got = [str(i) for i in frame["id"]]
    if len(got) != len(ids):
        raise SubmissionError(f"{len(got)} rows for {len(ids)} test questions; {_first_difference(ids, got)}")
    allowed, k = set(letters), predicted_letters(letters)
    for row, (expected, actual, pred) in enumerate(zip(ids, got, frame["prediction"]), start=2):
        if expected != actual:
            raise SubmissionError(
                f"line {row}: id '{actual}' where the test file has '{expected}' (order or ids differ)"
            )
        parts = str(pred).split(" ")
        if len(parts) != k or len(set(parts)) != k or not set(parts) <= allowed:
            raise SubmissionError(
                f"line {row}, id '{actual}': prediction '{pred}' is not {k} distinct letters from {''.join(letters)}"
            )


def _first_difference(expected: Sequence[str], got: Sequence[str]) -> str:
    """Where two id lists first part: 'line N: ...' (line 1 is the header)."""
    for row, (want, have) in enumerate(zip_longest(expected, got), start=2):
        if have is None:
            return f"line {row}: missing id '{want}' (the submission ends early)"
        if want is None:
            return f"line {row}: extra row, id '{have}' is not in the test file"
        if want != have:
            missing = "" if want in got else f" (id '{want}' is missing)"
            return f"line {row}: id '{have}' where the test file has '{want}'{missing}"
    return "no difference in ids"


def write_submission(frame: pd.DataFrame, path: str | Path, ids: Sequence[str], letters: Sequence[str]) -> Path:
    """Validate, then write atomically: a failure leaves no half-written file."""
    validate_submission(frame, ids, letters)
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
