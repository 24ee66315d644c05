"""How much weight should dense get in hybrid retrieval? Weighted reciprocal-rank fusion, chosen on one half of
the questions and reported on the other.

Corpus, queries and hits as in `retrieve_quality.py` (the 1,000 stem1k contexts, prompt + options, a hit is a
passage inside the question's own context). One hybrid index is built; each retriever's top DEPTH passages per
query are kept, then fused for every weight w as w / (60 + dense rank) + (1 - w) / (60 + BM25 rank)
(w = 0.5 is plain RRF, today's hybrid; w = 0 and 1 are BM25 and dense alone, cut to the fused depth).
The selection half (questions 0-499) picks w; the report half (500-999) gives the figures.

    python bench/hybrid_weight.py [--work runs/hybrid-weight] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import MINILM  # noqa: E402
from bench.retrieve_quality import STEM1K, load, normalise  # noqa: E402
from mcq.retrieve.ranking import reciprocal_rank_fusion  # noqa: E402

DEPTH = 50
WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
SPLIT = 500


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/hybrid-weight"), help="index and cached rankings")
    p.add_argument("--embedder", default=MINILM)
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def rankings(work: Path, embedder: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({retriever: [queries, DEPTH] passage ids}, [queries, passages] hit matrix), cached in `work`."""
    cache = work / "rankings.npz"
    if cache.is_file():
        saved = np.load(cache)
        return {"bm25": saved["bm25"], "dense": saved["dense"]}, saved["hits"]
    import pandas as pd

    from mcq.retrieve.index import build_index, open_index
    from mcq.retrieve.settings import IndexSettings

    corpus, queries, own = load(None)
    work.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": corpus}).to_csv(work / "corpus.csv", index_label="id")
    if not (work / "index").is_dir():
        build_index([work / "corpus.csv"], work / "index", IndexSettings(retriever="hybrid", embedder=embedder))
    index = open_index(work / "index")
    ranked = {name: searcher.search(queries, DEPTH)[0] for name, searcher in index.searchers.items()}
    texts = [normalise(p.text) for p in index.passages(list(range(len(index))))]
    hits = np.array([[t in context for t in texts] for context in own], dtype=bool)
    np.savez(cache, hits=hits, **ranked)
    return ranked, hits


def first_hit_ranks(ids: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Rank (from 1) of each query's first hit among its ids, or 0 when none is a hit."""
    rows = np.arange(len(ids))[:, None]
    found = np.where(ids >= 0, hits[rows, np.maximum(ids, 0)], False)
    return np.where(found.any(axis=1), found.argmax(axis=1) + 1, 0)


def recall_at(ranks: np.ndarray, depths=(1, 3, 5)) -> dict[int, float]:
    return {d: float(((ranks > 0) & (ranks <= d)).mean()) for d in depths}


def main(argv=None) -> int:
    args = parse_args(argv)
    if not STEM1K.is_file():
        print(f"{STEM1K} not found (the shared data folder sits beside the checkout)", file=sys.stderr)
        return 2
    ranked, hits = rankings(args.work, args.embedder)
    halves = {"selection": slice(0, SPLIT), "report": slice(SPLIT, None)}
    figures: dict = {"weights": {}}
    for w in WEIGHTS:
        ids, _ = reciprocal_rank_fusion([ranked["bm25"], ranked["dense"]], 5, weights=[1 - w, w])
        ranks = first_hit_ranks(ids, hits)
        figures["weights"][w] = {half: recall_at(ranks[part]) for half, part in halves.items()}
    best = max(WEIGHTS, key=lambda w: (figures["weights"][w]["selection"][1], figures["weights"][w]["selection"][3]))
    figures["chosen"] = best
    print("| dense weight w | selection recall@1 / @3 / @5 | report recall@1 / @3 / @5 |\n|---|---|---|")
    for w, row in figures["weights"].items():
        cells = [" / ".join(f"{row[h][d]:.3f}" for d in (1, 3, 5)) for h in halves]
        mark = " (chosen on selection)" if w == best else ""
        print(f"| {w}{mark} | {cells[0]} | {cells[1]} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
