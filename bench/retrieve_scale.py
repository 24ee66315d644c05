"""Speed and scale of the lexical index.

(a) Our BM25 (mcq.retrieve: bm25s) against two plain baselines on the same 1,000 stem1k contexts, each built
    and queried in its own process: rank-bm25 (BM25Okapi, pure Python) and scikit-learn brute force (TF-IDF +
    a sparse product). Build time, peak RSS, queries/s and recall@5 (so speed is not bought with quality).
(b) Our BM25 on synthetic corpora of 10k, 100k, 1M passages (Zipf-distributed words, 60-120 a passage, a
    title): build time, peak RSS, index size, load time and query latency; then a linear projection to a
    6M-passage Wikipedia STEM corpus against Kaggle's limits.

    python bench/retrieve_scale.py                       # (a) and (b) up to 1M passages: ~15 min on 2 cores
    python bench/retrieve_scale.py --sizes 10000 20000   # quick
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
STEM1K = HERE.parents[2] / "shared" / "data" / "llmse_stem1k_with_context.csv"
KAGGLE = {"ram_gib": 13.0, "disk_gib": 20.0, "hours": 9.0}
TARGET = 6_000_000
WORD = re.compile(r"(?u)\b\w\w+\b")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stem1k():
    sys.path.insert(0, str(HERE.parent))
    from retrieve_quality import load, normalise

    corpus, queries, own = load(None)
    return corpus, queries, own, normalise


def one_baseline(kind: str) -> dict:
    """Build and query one system on the 1k corpus in this process; recall@5 by the quality benchmark's rule."""
    import numpy as np

    corpus, queries, own, normalise = stem1k()
    start = time.perf_counter()
    if kind == "ours":
        import pandas as pd

        from mcq.retrieve.index import build_index, open_index

        work = Path(tempfile.mkdtemp())
        pd.DataFrame({"text": corpus}).to_csv(work / "c.csv", index_label="id")
        build_index([work / "c.csv"], work / "idx")
        index = open_index(work / "idx")
        build_s = time.perf_counter() - start
        t = time.perf_counter()
        ids, _ = index.search(queries, 5)
        query_s = time.perf_counter() - t
        texts = [[normalise(p.text) for p in index.passages([int(i) for i in row if i >= 0])] for row in ids]
    else:
        from mcq.retrieve.corpus import passages
        from mcq.retrieve.settings import PassageSettings

        docs = [p.text for p in passages([_csv(corpus)], PassageSettings())]  # the same passages as ours
        if kind == "rank-bm25":
            from rank_bm25 import BM25Okapi
            from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

            def tokens(text):
                return [w for w in WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]

            model = BM25Okapi([tokens(d) for d in docs])
            build_s = time.perf_counter() - start
            t = time.perf_counter()
            ids = np.array([np.argsort(-model.get_scores(tokens(q)))[:5] for q in queries])
        else:
            from sklearn.feature_extraction.text import TfidfVectorizer

            vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english")
            matrix = vectorizer.fit_transform(docs)
            build_s = time.perf_counter() - start
            t = time.perf_counter()
            scores = (vectorizer.transform(queries) @ matrix.T).toarray()
            ids = np.argsort(-scores, axis=1)[:, :5]
        query_s = time.perf_counter() - t
        texts = [[normalise(docs[i]) for i in row] for row in ids]
    hits = sum(any(t in context for t in row) for row, context in zip(texts, own))
    return {"build_s": build_s, "qps": len(queries) / query_s, "recall5": hits / len(queries), "rss": peak_rss()}


def _csv(corpus) -> Path:
    import pandas as pd

    path = Path(tempfile.mkdtemp()) / "c.csv"
    pd.DataFrame({"text": corpus}).to_csv(path, index_label="id")
    return path


def synthetic(path: Path, n: int, seed: int = 0, vocab: int = 200_000) -> None:
    """n passages of 60-120 Zipf(1.1)-distributed words over `vocab` made-up words, with a title, as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(vocab)])
    writer = None
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        lengths = rng.integers(60, 121, size=m)
        ranks = np.minimum(rng.zipf(1.1, size=int(lengths.sum())) - 1, vocab - 1)
        flat = words[ranks]
        cuts = np.cumsum(lengths)[:-1]
        texts = [" ".join(chunk) + "." for chunk in np.split(flat, cuts)]
        titles = [" ".join(words[rng.integers(0, vocab, size=2)]) for _ in range(m)]
        table = pa.table({"id": [f"s{start + i}" for i in range(m)], "title": titles, "text": texts})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def one_size(path: Path) -> dict:
    """Build, load and query our BM25 over one synthetic corpus in this process."""
    import numpy as np

    from mcq.retrieve.index import build_index, open_index

    out = path.parent / f"{path.stem}-index"
    start = time.perf_counter()
    manifest = build_index([path], out)
    build_s = time.perf_counter() - start
    build_rss = peak_rss()
    start = time.perf_counter()
    index = open_index(out)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    sample = [index.passages([int(i)])[0].text for i in rng.integers(0, len(index), size=1000)]
    queries = [" ".join(rng.choice(t.split(), size=40)) for t in sample]
    start = time.perf_counter()
    for i in range(0, len(queries), 100):
        index.search(queries[i : i + 100], 5)
    query_ms = (time.perf_counter() - start) * 1000 / len(queries)
    return {"passages": manifest["passages"], "build_s": build_s, "read_s": manifest["read_s"], "rss": build_rss,
            "disk": manifest["disk_bytes"], "ram_estimate": manifest["ram_bytes"], "load_s": load_s,
            "query_ms": query_ms}


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, str(HERE), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{args}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--max-rss-gib", type=float, default=12.0, help="stop growing before a size would pass this")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--size-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_baseline(args.one)))
        return 0
    if args.size_file:
        print(json.dumps(one_size(args.size_file)))
        return 0
    figures: dict = {"baselines": {}, "sizes": []}
    gib = 2**30
    if not args.skip_baselines and STEM1K.is_file():
        for kind in ("ours", "rank-bm25", "sklearn"):
            figures["baselines"][kind] = child("--one", kind)
        ours = figures["baselines"]["ours"]
        print("\n| system (1k stem1k contexts) | build s | queries/s | peak RSS MiB | recall@5 | queries/s vs ours |")
        print("|---|---|---|---|---|---|")
        for kind, f in figures["baselines"].items():
            print(f"| {kind} | {f['build_s']:.2f} | {f['qps']:.0f} | {f['rss'] / 2**20:.0f} | {f['recall5']:.3f} | "
                  f"{f['qps'] / ours['qps']:.3f}x |")
    work = Path(tempfile.mkdtemp(prefix="retrieve-scale-"))
    for n in sorted(args.sizes):
        if figures["sizes"]:
            last = figures["sizes"][-1]
            projected = last["rss"] * n / last["passages"]
            if projected > args.max_rss_gib * gib:
                print(f"stopped before {n} passages: projected RSS {projected / gib:.1f} GiB > {args.max_rss_gib}")
                break
        path = work / f"syn{n}.parquet"
        synthetic(path, n)
        f = child("--size-file", str(path))
        figures["sizes"].append(f)
        print(f"{n}: {json.dumps(f)}", flush=True)
        for p in work.glob(f"syn{n}*"):
            subprocess.run(["rm", "-rf", str(p)])
    print("\n| passages | build s | of which read+split s | peak RSS GiB | index GiB | load s | ms/query |")
    print("|---|---|---|---|---|---|---|")
    for f in figures["sizes"]:
        print(f"| {f['passages']:,} | {f['build_s']:.1f} | {f['read_s']:.1f} | {f['rss'] / gib:.2f} | "
              f"{f['disk'] / gib:.3f} | {f['load_s']:.2f} | {f['query_ms']:.2f} |")
    if len(figures["sizes"]) >= 2:
        a, b = figures["sizes"][-2], figures["sizes"][-1]

        def at(key):  # linear through the two largest sizes
            slope = (b[key] - a[key]) / (b["passages"] - a["passages"])
            return b[key] + slope * (TARGET - b["passages"])

        build_h, rss, disk = at("build_s") / 3600, at("rss") / gib, at("disk") / gib
        per_q = at("query_ms")
        print(f"\nprojection to {TARGET:,} passages (linear through the two largest sizes): build {build_h:.1f} h "
              f"(offline, not in the kernel), peak RSS while building {rss:.1f} GiB, index {disk:.1f} GiB on disk, "
              f"{per_q:.0f} ms a query -> {per_q * 4000 / 60000:.1f} min for 4,000 questions. Kaggle: "
              f"~{KAGGLE['ram_gib']:.0f} GiB RAM, {KAGGLE['disk_gib']:.0f} GiB working disk, {KAGGLE['hours']:.0f} h.")
        figures["projection"] = {"build_h": build_h, "rss_gib": rss, "disk_gib": disk, "query_ms": per_q}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
