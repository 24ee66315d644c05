"""Dense retrieval at scale (issue 23): IVF-PQ against the exact (flat) index, as mcq builds them.

(a) Synthetic vectors, no text to embed: n points on the 384-d unit sphere around 2,000 centres (a corpus has
    topics; each point ~0.6 from its centre), queries are corpus points moved ~0.2: a hard test of neighbour
    recall (a cluster's members sit at nearly equal distances). For each size: the build time and peak RSS of
    mcq's IVF-PQ (trained on a sample, filled from a memory-mapped file), its size on disk, ms per query, and its
    recall@5 relative to flat (the share of flat's top 5 it finds) and hit@5 (the query's own point in the top 5,
    as a question's own passage is in retrieval), at several nprobe.
(b) stem1k: the 1,000 contexts' passages embedded by all-MiniLM-L6-v2, the questions as queries; hit@5 (the
    question's own passage in the top 5) of IVF-PQ against flat.
(c) --embed-queries: how fast all-MiniLM-L6-v2 embeds stem1k's 1,000 questions (prompt + options) through
    mcq's own `embed` (what a dense search does first), on this machine's device: the other half of the time
    a dense search of 4,000 questions takes.
Then a projection to 6M passages and 4,000 questions.

    python -m bench.dense_scale                                 # 100k, 300k, 1M: ~20 min on 2 cores
    python -m bench.dense_scale --sizes 20000 --queries 200      # quick
    python -m bench.dense_scale --embed-queries                 # (c) alone: ~30 s
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python bench/NAME.py: the root, for bench.*

from bench.retrieve_scale import peak_rss  # noqa: E402

DIM = 384
TARGET = 6_000_000
NPROBES = (8, 16, 32, 64)


def synthetic(path: Path, n: int, seed: int = 0, centres: int = 2000, noise: float = 0.03) -> None:
    """n unit vectors around random centres, written as float32 rows (as mcq's embedding spool holds them)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, DIM)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    with path.open("wb") as handle:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            x = middle[rng.integers(0, centres, size=m)] + noise * rng.standard_normal((m, DIM)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            handle.write(x.astype(np.float32).tobytes())


def one_size(path: Path, n: int, n_queries: int) -> dict:
    """Build mcq's IVF-PQ over the memory-mapped vectors in this process and measure it against flat."""
    import faiss

    from mcq.retrieve.dense import _faiss_index

    vectors = np.memmap(path, dtype=np.float32, mode="r", shape=(n, DIM))
    start = time.perf_counter()
    index = _faiss_index(vectors, "ivfpq")
    build_s = time.perf_counter() - start
    build_rss = peak_rss()
    out = path.with_suffix(".faiss")
    faiss.write_index(index, str(out))
    rng = np.random.default_rng(1)
    picked = rng.integers(0, n, size=n_queries)
    queries = np.asarray(vectors[picked]) + 0.01 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(DIM)
    for begin in range(0, n, 100_000):
        flat.add(np.ascontiguousarray(vectors[begin : begin + 100_000]))
    start = time.perf_counter()
    _, exact = flat.search(queries, 5)
    flat_ms = (time.perf_counter() - start) * 1000 / n_queries
    row: dict = {"n": n, "build_s": build_s, "build_rss": build_rss, "bytes": out.stat().st_size, "flat_ms": flat_ms}
    row["flat_hit5"] = float(np.mean([p in r for p, r in zip(picked, exact)]))  # the query's own point found
    for nprobe in NPROBES:
        index.nprobe = nprobe
        start = time.perf_counter()
        _, found = index.search(queries, 5)
        ms = (time.perf_counter() - start) * 1000 / n_queries
        recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(found, exact)])
        hit = np.mean([p in r for p, r in zip(picked, found)])
        row[f"nprobe_{nprobe}"] = {"ms": ms, "recall5": float(recall), "hit5": float(hit)}
    return row


def stem1k(work: Path) -> dict:
    """hit@5 of the question's own passage: flat against IVF-PQ at each nprobe, with all-MiniLM-L6-v2."""
    import pandas as pd

    from bench.common import MINILM
    from bench.retrieve_quality import load, normalise
    from mcq.retrieve.index import build_index, open_index
    from mcq.retrieve.settings import IndexSettings, SearchSettings

    corpus, queries, own = load(None)
    pd.DataFrame({"text": corpus}).to_csv(work / "corpus.csv", index_label="id")
    figures = {}
    for kind in ("flat", "ivfpq"):
        build_index([work / "corpus.csv"], work / kind, IndexSettings("dense", embedder=MINILM, dense_kind=kind))
        for nprobe in (16,) if kind == "flat" else NPROBES:
            index = open_index(work / kind, search=SearchSettings(nprobe=nprobe))
            ids, _ = index.search(queries, 5)
            hits = 0
            for row, context in zip(ids, own):
                texts = [normalise(p.text) for p in index.passages([int(i) for i in row if i >= 0])]
                hits += any(t in context for t in texts)
            figures[kind if kind == "flat" else f"ivfpq nprobe {nprobe}"] = hits / len(queries)
    return figures


def query_embedding() -> dict:
    """Questions a second that the embedder turns into vectors, after one warm-up batch."""
    import torch

    from bench.common import MINILM
    from bench.retrieve_quality import load
    from mcq.retrieve.dense import embed, load_embedder, on_gpu_in_fp16

    _, queries, _ = load(None)
    model = on_gpu_in_fp16(load_embedder(MINILM))
    embed(model, queries[:64])
    start = time.perf_counter()
    embed(model, queries)
    per_s = len(queries) / (time.perf_counter() - start)
    tokens = model.tokenizer(queries, truncation=True, max_length=model.max_seq_length)["input_ids"]
    return {"device": str(model.device), "threads": torch.get_num_threads(), "questions_per_s": per_s,
            "mean_tokens": sum(map(len, tokens)) / len(tokens), "minutes_4000": 4000 / per_s / 60}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--skip-stem1k", action="store_true")
    p.add_argument("--embed-queries", action="store_true", help="(c) alone")
    p.add_argument("--json", type=Path)
    p.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one_size(args.one, args.n, args.queries)))
        return 0
    if args.embed_queries:
        speed = query_embedding()
        print(json.dumps(speed))
        if args.json:
            args.json.write_text(json.dumps(speed, indent=2))
        return 0
    work = Path(tempfile.mkdtemp(prefix="dense-scale-"))
    figures: dict = {"sizes": []}
    for n in sorted(args.sizes):
        path = work / f"v{n}.f32"
        synthetic(path, n)
        proc = subprocess.run([sys.executable, "-m", "bench.dense_scale", "--one", str(path), "--n", str(n),
                               "--queries", str(args.queries)], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1])  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        figures["sizes"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(figures["sizes"][-1]), flush=True)
        for f in work.glob(f"v{n}.*"):
            f.unlink()
    print("\n| vectors | build s | build peak RSS GiB | index MiB | flat ms/query | flat hit@5 | "
          + " | ".join(f"nprobe {k}: recall@5 / hit@5 / ms" for k in NPROBES) + " |")  # fmt: skip
    print("|---|---|---|---|---|---|" + "---|" * len(NPROBES))
    for r in figures["sizes"]:
        cells = " | ".join(f"{r[f'nprobe_{k}']['recall5']:.3f} / {r[f'nprobe_{k}']['hit5']:.3f} / "
                           f"{r[f'nprobe_{k}']['ms']:.2f}" for k in NPROBES)  # fmt: skip
        print(f"| {r['n']:,} | {r['build_s']:.1f} | {r['build_rss'] / 2**30:.2f} | {r['bytes'] / 2**20:.1f} | "
              f"{r['flat_ms']:.2f} | {r['flat_hit5']:.3f} | {cells} |")  # fmt: skip
    if len(figures["sizes"]) >= 2:
        a, b = figures["sizes"][-2], figures["sizes"][-1]
        size = b["bytes"] / b["n"] * TARGET
        ms = b["nprobe_16"]["ms"] + (b["nprobe_16"]["ms"] - a["nprobe_16"]["ms"]) / (b["n"] - a["n"]) * (
            TARGET - b["n"]
        )
        figures["projection"] = {"index_bytes": size, "ms_per_query_nprobe16": ms}
        print(f"\nprojection to {TARGET:,} passages: index {size / 2**30:.2f} GiB, {ms:.1f} ms a query at nprobe 16 "
              f"-> {ms * 4000 / 1000:.0f} s of search for 4,000 questions (plus embedding the queries)")  # fmt: skip
    if not args.skip_stem1k:
        figures["stem1k"] = stem1k(work)
        print("\nstem1k hit@5 (own passage in the top 5):", json.dumps(figures["stem1k"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
