"""Ensemble exported models into a submission:
`mcq-infer --models runs/x/models --test test.csv --out submission.csv`; or score with no model at all:
`mcq-infer --reader evidence --index runs/wiki-index --test test.csv`. Every flag is an InferConfig setting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mcq.cli import main_guard, quiet_transformers, setup_logging
from mcq.config import add_dataclass_flags, flag_overrides
from mcq.infer.config import InferConfig


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="infer.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_dataclass_flags(parser, InferConfig)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = InferConfig(**flag_overrides(args, InferConfig))
    setup_logging()
    quiet_transformers()
    from mcq.infer.run import BLEND_FILE, run_inference

    result = run_inference(cfg)
    if result.blend is not None:
        from mcq.core.blend import summary

        print(summary(result.blend))
        print(f"blend report: {(result.submission.parent / BLEND_FILE).resolve()}")
    if result.member_blend is not None:
        print(f"{result.member_blend.summary()} (chosen at training; --blend off scores the models alone)")
    for name, score in result.map3.items():
        print(f"MAP@3 {name}: {score:.4f}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    rotations = f", {result.tta_rotations} option rotations" if result.tta_rotations > 1 else ""
    scorers = f"{len(result.models)} model(s)" if result.models else "no model (evidence scores)"
    print(f"{result.n_questions} questions, {scorers}{rotations}; {stages}")
    print(f"submission: {result.submission.resolve()}")
    return 0


def run() -> None:
    """Console-script entry point (mcq-infer)."""
    sys.exit(main_guard(main))
