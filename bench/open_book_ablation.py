"""Which reader makes open book pay (issue 22): an mcq.ablate run of reader variants on stem1k.

Questions: stem1k (../shared/data); the first --train-n train, the next --test-n are scored. Corpus: the set's
1,000 `context` passages, indexed dense (all-MiniLM-L6-v2) by mcq's defaults; the question files keep each
question's own (gold) passage as their `context` column, which only the `gold-*` variants read
(`context_source: file`): every other variant retrieves (or, `closed`, reads no context). Same MiniLM recipe,
seeds, steps and max_length for every variant (the recipe of bench/open_book_score.py).

    python -m bench.open_book_ablation --work runs/open-book-ablation          # ~30 min a variant, 2 CPU cores
    python -m bench.open_book_ablation --work /tmp/x --train-n 40 --test-n 20 --seeds 0 --max-steps 2 \\
        --variants closed,reader                                              # smoke

Run the same command again to resume (finished variants and seeds are kept). The tables are
<work>/ablation/ablation.md; bench/open_book_evidence.py adds the evidence scores and the blend.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python bench/NAME.py: the root, for bench.*
from bench.common import MINILM  # noqa: E402

STEM1K = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmse_stem1k_with_context.csv"
VARIANTS = {
    "closed": {"about": "closed book: no context", "context_source": "none", "input_layout": "prompt-context"},
    "closed-mean": {
        "about": "closed book with mean pooling (does MiniLM's own pooling pay without context?)",
        "context_source": "none",
        "input_layout": "prompt-context",
        "pooling": "mean",
    },
    "open": {"about": "open book as before: prompt [SEP] context / option, [CLS]", "input_layout": "prompt-context"},
    "context-first": {"about": "context / prompt [SEP] option", "input_layout": "context-first"},
    "mean": {"about": "mean pooling", "input_layout": "prompt-context", "pooling": "mean"},
    "select": {
        "about": "lexical sentence selection from the top 3 passages (2,000 characters)",
        "input_layout": "prompt-context",
        "context_select": "lexical",
        "retrieve_k": 3,
        "context_chars": 2000,
    },
    "reader": {
        "about": "context first, mean pooling and sentence selection (top 3 passages)",
        "input_layout": "context-first",
        "pooling": "mean",
        "context_select": "lexical",
        "retrieve_k": 3,
        "context_chars": 2000,
    },
    "gold-reader": {
        "about": "the reader trained and scored on each question's own passage (can it read at all?)",
        "context_source": "file",
        "input_layout": "context-first",
        "pooling": "mean",
        "context_select": "lexical",
    },
}
DEFAULT = "closed,open,context-first,mean,select,reader,gold-reader"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="files, index and the ablation go here")
    p.add_argument("--train-n", type=int, default=800)
    p.add_argument("--test-n", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--k", type=int, default=2, help="passages per question (variants may raise it)")
    p.add_argument("--context-chars", type=int, default=800)
    p.add_argument("--max-length", type=int, default=192)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--lr", type=float, default=5e-5, help="configs/minilm-llmse.yaml's")
    p.add_argument("--variants", default=DEFAULT, help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--name", default="ablation", help="the ablation's folder under --work")
    return p.parse_args(argv)


def prepare(work: Path, train_n: int, test_n: int) -> None:
    """train.csv / valid.csv with each question's own passage as `context`, and corpus.csv of all passages."""
    import pandas as pd

    frame = pd.read_csv(STEM1K)
    columns = ["prompt", "context", "A", "B", "C", "D", "E", "answer"]
    frame.iloc[:train_n][columns].to_csv(work / "train.csv", index_label="id")
    frame.iloc[train_n : train_n + test_n][columns].to_csv(work / "valid.csv", index_label="id")
    frame[["context"]].rename(columns={"context": "text"}).to_csv(work / "corpus.csv", index_label="id")


def base_config(args, work: Path) -> dict:
    return {
        "model": MINILM,
        "train": [str(work / "train.csv")],
        "valid": str(work / "valid.csv"),
        "index": str(work / "index"),
        "output_dir": str(work / "run"),
        "seeds": args.seeds,
        "retrieve_k": args.k,
        "context_chars": args.context_chars,
        "max_length": args.max_length,
        "head_steps": 20,
        "head_lr": 1e-3,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "lr": args.lr,
        "per_device_batch": 8,
        "precision": "fp32",
        "eval_batch": 32,
        "logging_steps": 50,
        "save_steps": 100,
        "valid_overlap": "warn",
        "report_to": ["none"],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if not STEM1K.is_file():
        print(f"{STEM1K} not found (the shared data folder sits beside the checkout)", file=sys.stderr)
        return 2
    from mcq.ablate.cli import main as ablate
    from mcq.cli import setup_logging
    from mcq.retrieve.index import build_index
    from mcq.retrieve.settings import IndexSettings

    setup_logging()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "index").is_dir():
        prepare(work, args.train_n, args.test_n)
        build_index([work / "corpus.csv"], work / "index", IndexSettings(retriever="dense", embedder=MINILM))
    (work / "base.yaml").write_text(yaml.safe_dump(base_config(args, work)), encoding="utf-8")
    (work / "variants.yaml").write_text(yaml.safe_dump(VARIANTS, sort_keys=False), encoding="utf-8")
    return ablate(
        [
            "--config", str(work / "base.yaml"), "--define", str(work / "variants.yaml"),
            "--variants", args.variants, "--out", str(work / args.name),
        ]
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
