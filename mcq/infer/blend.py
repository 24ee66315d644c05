"""`python -m mcq.infer.blend --logits a.npy b.npy --valid valid.csv`: ensemble weights fitted on saved
validation logits and cross-validated against equal weights (no model runs; the maths is `mcq.core.blend`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mcq.core.blend import blend_report, fold_indices, summary
from mcq.errors import ConfigError, DataError


def load_logits(paths: Sequence[str | Path], n_questions: int, n_options: int, valid: str) -> list[np.ndarray]:
    """Saved logits (.npy), each checked against the validation file's shape; errors name the file."""
    arrays = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"--logits {path}: no such file.")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise DataError(f"--logits {path}: not a NumPy .npy array ({err}).") from err
        if array.shape != (n_questions, n_options):
            raise DataError(
                f"--logits {path}: shape {array.shape}, but {valid} has {n_questions} questions with {n_options} "
                "options; give logits scored on this validation file, in its row order."
            )
        if not np.isfinite(array).all():
            raise DataError(f"--logits {path}: holds NaN or infinite values.")
        arrays.append(array)
    return arrays


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from mcq.cli import positive_int

    parser = argparse.ArgumentParser(
        prog="python -m mcq.infer.blend",
        description="Fit ensemble weights on saved validation logits and cross-validate them against equal weights.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--logits", nargs="+", required=True, help="one .npy per model, scored on --valid in order")
    parser.add_argument("--valid", required=True, help="the validation question file (with answers)")
    parser.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds inside --valid")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold shuffle")
    parser.add_argument("--out", help="write the report here as JSON (e.g. blend.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from mcq.core.data import read_questions
    from mcq.io import atomic_write_text

    if len(args.logits) < 2:
        raise ConfigError("--logits: give two or more models' logits; one model has nothing to weigh.")
    valid = read_questions(args.valid, require_answer=True)
    logits = load_logits(args.logits, len(valid), len(valid.letters), args.valid)
    fold_indices(len(valid), args.folds)  # a bad --folds fails before any fitting
    report = blend_report(logits, valid.answers or [], valid.options, args.logits, args.folds, args.seed, args.valid)
    print(summary(report))
    if args.out:
        print(f"report: {atomic_write_text(args.out, report.to_json()).resolve()}")
    return 0


if __name__ == "__main__":
    from mcq.cli import main_guard

    sys.exit(main_guard(main))
