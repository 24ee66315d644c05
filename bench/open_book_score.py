"""The MAP@3 gain of open book: the same MiniLM recipe, seeds and questions, with retrieved context and without.

Questions: the stem1k set of ../shared/data (its first --train-n questions train, the next --test-n are scored).
Corpus: the set's 1,000 `context` passages (each question's own passage is in it, as Wikipedia holds the
answer's article), indexed with mcq's defaults (BM25; --retriever dense for all-MiniLM-L6-v2). The file's own
context column is dropped; the open-book run retrieves k passages per question with the prompt + options as query.
The gold run gives each question its own context instead, cut to the same --context-chars: the upper bound of
retrieval, which says whether this reader can use context at all. --runs picks which of closed, open, gold run.

    python bench/open_book_score.py            # 3 seeds each way, ~30 min on 2 CPU cores
    python bench/open_book_score.py --train-n 80 --test-n 40 --seeds 0 --max-steps 5   # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python bench/NAME.py: the root, for bench.*
from bench.common import MINILM  # noqa: E402

STEM1K = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmse_stem1k_with_context.csv"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-n", type=int, default=800)
    p.add_argument("--test-n", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--k", type=int, default=2, help="passages per question")
    p.add_argument("--context-chars", type=int, default=800)
    p.add_argument("--max-length", type=int, default=192, help="the same for both runs")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--lr", type=float, default=5e-5, help="configs/minilm-llmse.yaml's")
    p.add_argument("--retriever", default="bm25", help="bm25, tfidf or dense (all-MiniLM-L6-v2)")
    p.add_argument("--runs", nargs="+", choices=["closed", "open", "gold"], default=["closed", "open"])
    p.add_argument("--work", type=Path, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    return p.parse_args(argv)


def split_files(work: Path, train_n: int, test_n: int, gold_chars: int) -> Path:
    """train.csv and valid.csv without the context column, gold_train.csv and gold_valid.csv with each question's
    own context cut to gold_chars characters, and corpus.csv of all 1,000 contexts; returns the corpus."""
    import pandas as pd

    frame = pd.read_csv(STEM1K)
    columns = ["prompt", "A", "B", "C", "D", "E", "answer"]
    gold = frame.assign(context=frame["context"].astype(str).str.slice(0, gold_chars))
    for prefix, table, cols in (("", frame, columns), ("gold_", gold, [*columns, "context"])):
        table.iloc[:train_n][cols].to_csv(work / f"{prefix}train.csv", index_label="id")
        table.iloc[train_n : train_n + test_n][cols].to_csv(work / f"{prefix}valid.csv", index_label="id")
    frame[["context"]].rename(columns={"context": "text"}).to_csv(work / "corpus.csv", index_label="id")
    return work / "corpus.csv"


def run(args, work: Path, name: str, index: Path | None) -> dict:
    from mcq.train.config import TrainConfig
    from mcq.train.run import run_training

    prefix = "gold_" if name == "gold" else ""
    cfg = TrainConfig(
        model=MINILM, train=[str(work / f"{prefix}train.csv")], valid=str(work / f"{prefix}valid.csv"),
        output_dir=str(work / name),
        seeds=args.seeds, max_length=args.max_length, head_steps=20, head_lr=1e-3, epochs=args.epochs,
        max_steps=args.max_steps, lr=args.lr, per_device_batch=8, precision="fp32", eval_batch=32,
        logging_steps=50, save_steps=10_000, index=str(index) if index else None, retrieve_k=args.k,
        context_chars=args.context_chars, valid_overlap="warn",
    )  # fmt: skip
    start = time.perf_counter()
    report = run_training(cfg)
    return {
        "seeds": [s["valid_map3"] for s in report["seeds"]],
        "ensemble": report["ensemble_valid_map3"],
        "wall_s": time.perf_counter() - start,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if not STEM1K.is_file():
        print(f"{STEM1K} not found (the shared data folder sits beside the checkout)", file=sys.stderr)
        return 2
    from mcq.cli import setup_logging
    from mcq.retrieve.index import build_index
    from mcq.retrieve.settings import IndexSettings

    setup_logging()
    work = args.work or Path(tempfile.mkdtemp(prefix="open-book-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = split_files(work, args.train_n, args.test_n, args.context_chars)
    embedder = MINILM if args.retriever in ("dense", "hybrid") else None
    manifest = build_index([corpus], work / "index", IndexSettings(retriever=args.retriever, embedder=embedder))
    results = {}
    for name in args.runs:
        results[name] = run(args, work, name, work / "index" if name == "open" else None)
        print(f"{name}: {results[name]}", flush=True)  # a long run keeps what it measured
    labels = {
        "closed": "closed book",
        "open": f"open book ({args.retriever}, k={args.k})",
        "gold": f"gold context ({args.context_chars} chars)",
    }
    rows = [
        "| run | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | ensemble | wall s |",
        "|---|" + "---|" * (len(args.seeds) + 3),
    ]
    for name, r in results.items():
        mean = sum(r["seeds"]) / len(r["seeds"])
        rows.append(
            f"| {labels[name]} | "
            + " | ".join(f"{x:.4f}" for x in r["seeds"])
            + f" | {mean:.4f} | {r['ensemble']:.4f} | {r['wall_s']:.0f} |"
        )
    if "closed" in results:
        closed = results["closed"]
        for name in [n for n in results if n != "closed"]:
            gains = [o - c for o, c in zip(results[name]["seeds"], closed["seeds"])]
            rows.append(
                f"| gain ({name} - closed) | "
                + " | ".join(f"{g:+.4f}" for g in gains)
                + f" | {sum(gains) / len(gains):+.4f} | {results[name]['ensemble'] - closed['ensemble']:+.4f} | |"
            )
    print(
        f"\n{args.train_n} training / {args.test_n} scored questions of stem1k; corpus {manifest['passages']} "
        f"passages; MiniLM, max_length {args.max_length}, {args.epochs:g} epoch(s), lr {args.lr:g}\n"
    )
    print("\n".join(rows))
    if args.json:
        args.json.write_text(
            json.dumps({**results, "args": vars(args) | {"work": str(work), "json": str(args.json)}}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
