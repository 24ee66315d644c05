"""Retrieval quality on real questions: recall@1/@3/@5 of BM25, TF-IDF, dense and hybrid.

Corpus: the 1,000 `context` passages of ../shared/data/llmse_stem1k_with_context.csv, split by mcq's default
passage settings (and de-duplicated). Query: each question's prompt + options (`mcq.retrieve.context.query_text`).
A hit is a retrieved passage whose text lies inside the question's own context (white space normalised, so a
passage shared by two questions' contexts counts for both).

    python bench/retrieve_quality.py                     # all four retrievers (dense ones embed on CPU: minutes)
    python bench/retrieve_quality.py --retrievers bm25 tfidf --limit 200
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
DEPTHS = (1, 3, 5)


def normalise(text: str) -> str:
    return " ".join(str(text).split())


def load(limit: int | None):
    """(corpus texts, queries, each query's own context) of the stem1k set."""
    import pandas as pd

    from mcq.retrieve.context import query_text

    frame = pd.read_csv(STEM1K)
    options = frame[list("ABCDE")].fillna("").astype(str).values.tolist()
    queries = [query_text(str(p), o) for p, o in zip(frame["prompt"], options)]
    own = [normalise(c) for c in frame["context"]]
    n = limit or len(frame)
    return frame["context"].astype(str).tolist(), queries[:n], own[:n]


def recall(index, queries: list[str], own: list[str]) -> tuple[dict, float]:
    """recall@d for each depth, and queries/s of the search alone."""
    start = time.perf_counter()
    ids, _ = index.search(queries, max(DEPTHS))
    qps = len(queries) / (time.perf_counter() - start)
    texts = {}
    first_hit = []
    for row, context in zip(ids, own):
        rank = None
        for r, pid in enumerate(row):
            if pid < 0:
                break
            if int(pid) not in texts:
                texts[int(pid)] = normalise(index.passages([int(pid)])[0].text)
            if texts[int(pid)] in context:
                rank = r + 1
                break
        first_hit.append(rank)
    return {d: sum(1 for r in first_hit if r is not None and r <= d) / len(own) for d in DEPTHS}, qps


def query_terms(work: Path, queries: list[str], own: list[str], counts: list[int], out: Path | None) -> int:
    """BM25 recall and queries/s per number of a query's rarest words looked up, on two halves of the questions."""
    from mcq.retrieve.index import build_index, open_index

    build_index([work / "corpus.csv"], work / "bm25")
    index = open_index(work / "bm25")
    half = len(queries) // 2
    figures = {}
    print("| rarest words looked up | recall@1 / @3 / @5, questions 0-499 (choose) | the same, 500-999 (report) | "
          "queries/s |")  # fmt: skip
    print("|---|---|---|---|")
    for n in counts:
        index.searchers["bm25"].query_terms = n
        choose, _ = recall(index, queries[:half], own[:half])
        report, qps = recall(index, queries[half:], own[half:])
        figures[n] = {"choose": choose, "report": report, "qps": qps}
        shown = [" / ".join(f"{r[d]:.3f}" for d in DEPTHS) for r in (choose, report)]
        print(f"| {n or 'all'} | {shown[0]} | {shown[1]} | {qps:.0f} |", flush=True)
    if out:
        out.write_text(json.dumps(figures, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrievers", nargs="+", default=["bm25", "tfidf", "dense", "hybrid"])
    parser.add_argument("--limit", type=int, help="score only the first N questions")
    parser.add_argument("--embedder", default=MINILM)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--query-terms", type=int, nargs="+",
                        help="BM25 only: recall and speed when a query looks up only its N rarest words (0: all), "
                             "chosen on questions 0-499 and reported on 500-999")  # fmt: skip
    args = parser.parse_args(argv)
    if not STEM1K.is_file():
        print(f"{STEM1K} not found (the shared data folder sits beside the checkout)", file=sys.stderr)
        return 2
    import pandas as pd

    from mcq.retrieve.index import build_index, open_index
    from mcq.retrieve.settings import IndexSettings

    corpus, queries, own = load(args.limit)
    work = Path(tempfile.mkdtemp(prefix="retrieve-quality-"))
    pd.DataFrame({"text": corpus}).to_csv(work / "corpus.csv", index_label="id")
    if args.query_terms:
        return query_terms(work, queries, own, args.query_terms, args.json)
    rows, figures = [], {}
    for name in args.retrievers:
        embedder = args.embedder if name in ("dense", "hybrid") else None
        start = time.perf_counter()
        manifest = build_index([work / "corpus.csv"], work / name, IndexSettings(retriever=name, embedder=embedder))
        build_s = time.perf_counter() - start
        scores, qps = recall(open_index(work / name), queries, own)
        figures[name] = {
            "recall": scores,
            "build_s": build_s,
            "qps": qps,
            "disk_bytes": manifest["disk_bytes"],
            "passages": manifest["passages"],
        }
        rows.append(
            f"| {name} | "
            + " | ".join(f"{scores[d]:.3f}" for d in DEPTHS)
            + f" | {build_s:.1f} | {qps:.0f} | {manifest['disk_bytes'] / 2**20:.1f} |"
        )
        print(rows[-1], flush=True)
    n_passages = next(iter(figures.values()))["passages"]
    print(f"\n{len(queries)} questions; corpus: {len(corpus)} contexts -> {n_passages} passages (default settings)\n")
    print("| retriever | recall@1 | recall@3 | recall@5 | build s | queries/s | index MiB |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
