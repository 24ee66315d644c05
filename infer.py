"""Ensemble exported models into a submission:
`python infer.py --models runs/x/models --test test.csv --out submission.csv`."""
from __future__ import annotations

import argparse
import sys

from mcq.attention import ATTENTION
from mcq.cli import main_guard


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="exported model folders, or folders holding several")
    parser.add_argument("--test", required=True, help="question file (id,prompt,A..E[,answer]); with answers MAP@3 is printed")
    parser.add_argument("--out", default="submission.csv", help="submission path; logits .npy files are written beside it")
    parser.add_argument("--weights", nargs="+", type=float, help="one weight per model for the logit mean (default equal)")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per forward pass (lower it on OOM)")
    parser.add_argument("--attention", default="eager", choices=ATTENTION,
                        help="DeBERTa attention: disentangled-flash runs fused Triton kernels on CUDA (pip install disentangled-flash)")
    parser.add_argument("--allow-mixed", action="store_true", help="allow models with different tokenizers or max_length")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mcq.infer import run_inference

    result = run_inference(args.models, args.test, args.out, args.weights, args.batch_tokens, args.allow_mixed,
                           args.attention)
    for name, score in result.map3.items():
        print(f"MAP@3 {name}: {score:.4f}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    print(f"{result.n_questions} questions, {len(result.models)} model(s); {stages}")
    print(f"submission: {result.submission.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
