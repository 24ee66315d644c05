"""Which rule should decide between tuned and equal ensemble weights? Measured on simulated models.

Each draw makes a validation set of N questions and a test set of 4,000, for six models (or three) whose
logits are `quality * onehot(answer) + 0.7 * shared noise + 0.7 * own noise`; the shared noise stands for what
seeds of one recipe get wrong together. `mcq.core.blend.blend_report` cross-validates on the validation set,
then each rule picks tuned or equal weights and is scored on the test set. Reported: the test MAP@3 of each
rule minus that of equal weights on the same draw (mean and standard error over draws), and how often it tuned.

Rules: "gain > 0" (as built: tuned when the cross-validated gain is positive) and "interval > 0" (tuned only when
the gain's 95 % paired bootstrap interval over the questions lies above 0; tried and dropped).

    python bench/blend_rule.py [--draws 60] [--sizes 40 100 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mcq.core.blend import blend_report  # noqa: E402
from mcq.core.metrics import map3_score, mean_logits  # noqa: E402

SCENARIOS = {
    "3 seeds of equal quality": [1.0] * 3,
    "3 good + 3 slightly worse (0.8)": [1.0] * 3 + [0.8] * 3,
    "3 good + 3 fair (0.6)": [1.0] * 3 + [0.6] * 3,
    "3 good + 3 weak (0.3)": [1.0] * 3 + [0.3] * 3,
}
TEST_QUESTIONS = 4000


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--draws", type=int, default=60)
    p.add_argument("--sizes", type=int, nargs="+", default=[40, 100, 500], help="validation questions per draw")
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def draw(rng: np.random.Generator, n: int, quality: list[float]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(answers, one logit matrix per model) for n five-option questions."""
    answers = rng.integers(0, 5, n)
    shared = rng.normal(size=(n, 5))
    return answers, [q * np.eye(5)[answers] + 0.7 * shared + 0.7 * rng.normal(size=(n, 5)) for q in quality]


def one_draw(seed: int, n: int, quality: list[float]) -> dict:
    rng = np.random.default_rng(seed)
    answers, logits = draw(rng, n, quality)
    test_answers, test_logits = draw(rng, TEST_QUESTIONS, quality)
    report = blend_report(logits, answers.tolist(), None, [str(i) for i in range(len(logits))], seed=seed)
    equal = map3_score(mean_logits(test_logits), test_answers.tolist())
    tuned = map3_score(mean_logits(test_logits, report.fitted), test_answers.tolist()) - equal
    picks = {"gain > 0": report.gain > 0, "interval > 0": report.gain_low > 0}
    return {"equal": equal, **{rule: (tuned if pick else 0.0, pick) for rule, pick in picks.items()}}


def scenario(quality: list[float], n: int, draws: int) -> dict:
    rows = [one_draw(1000 * k + n, n, quality) for k in range(draws)]
    out: dict = {"n_valid": n, "draws": draws, "equal_map3": float(np.mean([r["equal"] for r in rows]))}
    for rule in ("gain > 0", "interval > 0"):
        delta = np.array([r[rule][0] for r in rows])
        out[rule] = {
            "minus_equal": float(delta.mean()),
            "stderr": float(delta.std(ddof=1) / np.sqrt(draws)),
            "tuned": int(sum(r[rule][1] for r in rows)),
        }
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    figures = []
    print("| models | validation questions | equal weights, test MAP@3 | gain > 0: minus equal (tuned) "
          "| interval > 0: minus equal (tuned) |\n|---|---|---|---|---|")  # fmt: skip
    for name, quality in SCENARIOS.items():
        for n in args.sizes:
            row = scenario(quality, n, args.draws) | {"models": name}
            figures.append(row)
            cells = [f"{row[r]['minus_equal']:+.4f} ± {row[r]['stderr']:.4f} ({row[r]['tuned']}/{args.draws})"
                     for r in ("gain > 0", "interval > 0")]  # fmt: skip
            print(f"| {name} | {n} | {row['equal_map3']:.4f} | {cells[0]} | {cells[1]} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
