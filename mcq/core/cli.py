"""Ensemble exported models into a submission:
`mcq-infer --models runs/x/models --test test.csv --out submission.csv`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mcq.cli import main_guard, non_negative_float, positive_int, quiet_transformers, setup_logging
from mcq.core.attention import ATTENTION, DEFAULT_ATTENTION
from mcq.core.batching import DEFAULT_BATCH_TOKENS
from mcq.errors import ConfigError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="infer.py", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", required=True, help="exported model folders, or folders holding several"
    )
    parser.add_argument(
        "--test", required=True, help="question file (id,prompt,A..E[,answer]); with answers MAP@3 is printed"
    )
    parser.add_argument(
        "--out", default="submission.csv", help="submission path; logits .npy files are written beside it"
    )
    parser.add_argument(
        "--weights",
        nargs="+",
        type=non_negative_float,
        help="one weight per model for the logit mean (default equal)",
    )
    parser.add_argument(
        "--batch-tokens",
        type=positive_int,
        default=DEFAULT_BATCH_TOKENS,
        help="padded tokens per forward pass (lower it on OOM)",
    )
    parser.add_argument(
        "--attention",
        default=DEFAULT_ATTENTION,
        choices=ATTENTION,
        help="DeBERTa attention: disentangled-flash runs fused Triton kernels on CUDA "
        "(pip install disentangled-flash)",
    )
    parser.add_argument(
        "--allow-mixed", action="store_true", help="allow models with different tokenizers or max_length"
    )
    parser.add_argument(
        "--tta-rotations",
        type=positive_int,
        default=1,
        help="average each model's logits over N rotations of the options (1 to the number of options; "
        "N times the prediction time)",
    )
    parser.add_argument(
        "--tune-weights",
        metavar="VALID",
        help="fit the ensemble weights on this validation file (with answers); they are used only if they beat "
        "equal weights in cross-validation inside it (report: blend.json beside --out)",
    )
    book = parser.add_argument_group("open book (the models' own retrieval settings unless given)")
    book.add_argument("--index", help="index folder (mcq-retrieve build): retrieve each question's context")
    book.add_argument("--k", type=positive_int, help="passages per question (default: what the models trained with)")
    book.add_argument(
        "--context-chars", type=positive_int, help="characters of context at most (default: the models')"
    )
    book.add_argument(
        "--max-length",
        type=positive_int,
        help="tokens per pair (default: the models' own; raise it for longer context)",
    )
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """What can be checked before a model loads: the weights' count against the model folders found, --weights
    with --tune-weights."""
    from mcq.core.export import find_model_folders
    from mcq.core.infer import check_tuning, check_weights

    if Path(args.out).is_dir():
        raise ConfigError(
            f"--out {args.out}: is a folder; give the submission's file path (e.g. {args.out}/submission.csv)"
        )
    n_models = len(find_model_folders(args.models))
    check_tuning(args.tune_weights, args.weights, n_models)
    check_weights(args.weights, n_models, args.models)
    if args.index is not None:
        from mcq.retrieve.index import read_manifest

        read_manifest(args.index)  # a wrong folder fails now, not after the models are inspected


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    check_args(args)
    quiet_transformers()
    from mcq.core.infer import run_inference

    result = run_inference(
        args.models,
        args.test,
        args.out,
        args.weights,
        args.batch_tokens,
        args.allow_mixed,
        args.attention,
        index=args.index,
        k=args.k,
        context_chars=args.context_chars,
        max_length=args.max_length,
        tta_rotations=args.tta_rotations,
        tune_weights=args.tune_weights,
    )
    if result.blend is not None:
        from mcq.core.blend import summary
        from mcq.core.infer import BLEND_FILE

        print(summary(result.blend))
        print(f"blend report: {(result.submission.parent / BLEND_FILE).resolve()}")
    for name, score in result.map3.items():
        print(f"MAP@3 {name}: {score:.4f}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    rotations = f", {result.tta_rotations} option rotations" if result.tta_rotations > 1 else ""
    print(f"{result.n_questions} questions, {len(result.models)} model(s){rotations}; {stages}")
    print(f"submission: {result.submission.resolve()}")
    return 0


def run() -> None:
    """Console-script entry point (mcq-infer)."""
    sys.exit(main_guard(main))
