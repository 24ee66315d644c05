"""What option-rotation TTA and tuned ensemble weights buy, and what they cost.

TTA: `run_inference` on the validation file with 1, 2 and 5 rotations of the options, for the exported models
of one run (MAP@3 of each model and of the ensemble, and the prediction time, all in this process).
Blends: the saved validation logits of every seed of every variant of an ablation (`python -m mcq.ablate`)
fitted with `mcq.core.blend` (5-fold cross-validation inside the validation set: tuned vs equal weights on the
held-out folds).

    python bench/tta_blend.py --models runs/minilm-llmse-ablation/recipe/models \
        --ablation runs/minilm-llmse-ablation [--rotations 1 2 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import VALID  # noqa: E402
from mcq.core.blend import blend_report  # noqa: E402
from mcq.core.data import read_questions  # noqa: E402
from mcq.infer.config import InferConfig
from mcq.infer.run import run_inference  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, help="exported model folders of one run (for TTA)")
    p.add_argument("--ablation", type=Path, help="an ablation folder (for blends of every variant's seeds)")
    p.add_argument("--valid", type=Path, default=VALID)
    p.add_argument("--rotations", type=int, nargs="+", default=[1, 2, 5])
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def tta(models: Path, valid: Path, rotations: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in rotations:
            start = time.perf_counter()
            result = run_inference(
                InferConfig(models=[str(models)], test=str(valid), out=str(Path(tmp) / f"sub{n}.csv"), tta_rotations=n)
            )
            wall = time.perf_counter() - start
            timing = result.timings["predict_s"]
            rows.append({"rotations": n, "map3": result.map3, "predict_s": timing, "wall_s": wall})
            print(f"rotations {n}: ensemble MAP@3 {result.map3['ensemble']:.4f}, predict {wall:.1f}s", flush=True)
    return rows


def blends(ablation: Path, valid_file: Path) -> dict:
    table = json.loads((ablation / "ablation.json").read_text(encoding="utf-8"))
    valid = read_questions(valid_file, require_answer=True)
    assert valid.answers is not None
    names, logits = [], []
    for v in table["variants"]:
        for seed in sorted(v["scores"], key=int):
            names.append(f"{v['name']}/seed{seed}")
            logits.append(np.load(Path(v["run"]) / f"seed{seed}" / "valid_logits.npy"))
    out = {}
    for label, chosen in (("all seeds of all variants", range(len(names))),) + tuple(
        (f"seeds of {v['name']}", [i for i, n in enumerate(names) if n.startswith(v["name"] + "/")])
        for v in table["variants"]
    ):
        chosen = list(chosen)
        report = blend_report([logits[i] for i in chosen], valid.answers, valid.options, [names[i] for i in chosen])
        out[label] = {
            "models": report.models,
            "fitted": report.fitted,
            "equal_map3_cv": report.map3_equal,
            "tuned_map3_cv": report.map3_tuned,
            "gain": report.gain,
            "gain_interval": [report.gain_low, report.gain_high],
            "use_tuned": report.use_tuned,
        }
        fitted = [round(w, 3) for w in report.fitted]
        print(
            f"{label}: equal {report.map3_equal:.4f}, tuned {report.map3_tuned:.4f} (cross-validated), "
            f"gain {report.gain:+.4f} [{report.gain_low:+.4f}, {report.gain_high:+.4f}], used {report.use_tuned}; "
            f"fitted {fitted}",
            flush=True,
        )
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    figures: dict = {}
    if args.models:
        figures["tta"] = tta(args.models, args.valid, args.rotations)
    if args.ablation:
        figures["blends"] = blends(args.ablation, args.valid)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
