"""Inferring with more context than training (issue 22): the same trained models scored by infer.py at several
(k, context characters, max_length) settings, each against the first setting, paired over the questions.

The competition's DeBERTa readers inferred on more passages and tokens than they trained with; does a small
reader gain the same way? Each setting is one `infer.py --models M --index I --test T --k K --context-chars C
--max-length L` run (its logits kept under --work, so a second run reuses them).

    python -m bench.open_book_longer --models /work/abl/ablation-3ep/reader/models --index /work/abl/index \\
        --test /work/abl/valid.csv --work /work/abl/longer --settings 3,2000,192 3,2000,128 3,2000,256 \\
        5,4000,256 5,4000,384
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python bench/NAME.py: the root, for bench.*
import bench.common  # noqa: E402,F401  (offline, quiet tokenizers)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="a run's models folder")
    p.add_argument("--index", required=True)
    p.add_argument("--test", required=True, help="questions with answers")
    p.add_argument("--work", type=Path, required=True, help="one folder a setting (logits, submission)")
    p.add_argument(
        "--settings", nargs="+", required=True, help="k,context_chars,max_length; the first is the baseline"
    )
    return p.parse_args(argv)


def setting(text: str) -> tuple[int, int, int]:
    try:
        k, chars, length = (int(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"--settings: '{text}' is not k,context_chars,max_length (e.g. 3,2000,192)") from None
    return k, chars, length


def infer_once(args, k: int, chars: int, length: int) -> Path:
    """The setting's folder, inferred unless its logits are already there."""
    from mcq.infer.cli import main as infer

    out = args.work / f"k{k}-c{chars}-t{length}"
    if not (out / "logits_ensemble.npy").is_file():
        flags = ["--models", args.models, "--index", args.index, "--test", args.test, "--out", str(out / "s.csv")]
        if infer([*flags, "--k", str(k), "--context-chars", str(chars), "--max-length", str(length)]) != 0:
            raise SystemExit(f"infer.py failed for k {k}, {chars} characters, {length} tokens")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from mcq.cli import setup_logging
    from mcq.core.data import read_questions
    from mcq.core.metrics import map3_score, question_ap
    from mcq.core.significance import paired_bootstrap

    setup_logging()
    questions = read_questions(args.test, require_answer=True)
    answers, options = questions.answers or [], questions.options  # require_answer: never empty
    settings = [setting(text) for text in args.settings]  # all checked before the first (minutes-long) inference
    rows, base = [], None
    for k, chars, length in settings:
        out = infer_once(args, k, chars, length)
        seeds = [map3_score(np.load(p), answers, options) for p in sorted(out.glob("logits_seed*.npy"))]
        ens = np.load(out / "logits_ensemble.npy")
        blend = np.load(out / "logits_blend.npy") if (out / "logits_blend.npy").is_file() else None
        ap = question_ap(ens, answers, options)
        base = ap if base is None else base
        boot = paired_bootstrap(base, ap)
        rows.append(
            f"| {k} | {chars:,} | {length} | {' / '.join(f'{s:.4f}' for s in seeds)} | {ap.mean():.4f} | "
            f"{boot.mean:+.4f} [{boot.low:+.4f}, {boot.high:+.4f}] | "
            + (f"{map3_score(blend, answers, options):.4f}" if blend is not None else "")
            + " |"
        )
    print("| k | context chars | max_length | MAP@3 per seed | ensemble | ensemble − first [95 % CI] | blend |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
