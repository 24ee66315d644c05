"""Speed and scale of the lexical index.

(a) Our BM25 (mcq.retrieve: bm25s) against two plain baselines on the same 1,000 stem1k contexts, each built
    and queried in its own process: rank-bm25 (BM25Okapi, pure Python) and scikit-learn brute force (TF-IDF +
    a sparse product). Build time, peak RSS, queries/s and recall@5 (so speed is not bought with quality).
(b) Our BM25 on synthetic corpora of 10k, 100k, 1M passages: build time, peak RSS, index size, load time and
    query latency; then a linear projection to a 6M-passage Wikipedia STEM corpus against Kaggle's limits.
    Two corpora (--corpus):
    - `wiki` (the default): each passage one of stem1k's own passages (Wikipedia STEM text, cut as mcq cuts
      it) drawn at random, plus 20 % made-up words from a long Zipf tail (a large corpus' vocabulary); the
      queries are stem1k's 1,000 real questions (prompt + five options). A real word sits in the same share of
      passages as in real Wikipedia STEM text, so a query reads as many postings as it would there.
    - `unigram`: stem1k's passages once each, the rest drawn word by word from stem1k's word frequencies (the
      lengths of its passages, plus the same 20 % made-up tail): no near-copies of a question's own passage, so
      the k-th best score of a query is low and pruning (mcq.retrieve.maxscore) skips least, and common
      words, spread without clumping, sit in more passages than in real text: the slow side of real text.
      `wiki` is the fast side (a question's own passage has ~N/2,000 near-copies to fill its top k).
    - `zipf`: 60-120 Zipf(1.1)-distributed made-up words a passage, queries 40 words of a passage. Its top
      words sit in nearly every passage and every query holds several: a worst case, not English.

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
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve()
STEM1K = HERE.parents[2] / "shared" / "data" / "llmse_stem1k_with_context.csv"
KAGGLE = {"ram_gib": 13.0, "disk_gib": 20.0, "hours": 9.0}
TARGET = 6_000_000
WORD = re.compile(r"(?u)\b\w\w+\b")


def peak_rss() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it carries nothing over from a fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stem1k():
    sys.path.insert(0, str(HERE.parents[1]))
    from bench.retrieve_quality import load, normalise

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
    assert writer is not None, "no passages asked for"
    writer.close()


def wiki_like(path: Path, n: int, seed: int = 0, noise: float = 0.2, vocab: int = 2_000_000) -> None:
    """n passages, each a random one of stem1k's passages (as mcq splits its contexts) plus `noise` x its length
    made-up Zipf(1.2) words over `vocab`, as Parquet; stem1k's questions as queries beside it (.queries.json)."""
    import numpy as np

    real, queries = _real_passages()
    rng = np.random.default_rng(seed)

    def chunk(start: int, m: int) -> list[str]:
        picks = rng.integers(0, len(real), size=m)
        extra = np.array([int(len(real[j].split()) * noise) for j in picks])
        return [f"{real[j]} {' '.join(tail)}" for j, tail in zip(picks, _made_up(rng, extra, vocab))]

    _write_corpus(path, n, "w", chunk, queries)


def unigram_like(path: Path, n: int, seed: int = 0, noise: float = 0.2, vocab: int = 2_000_000) -> None:
    """stem1k's passages, then random ones to n: words drawn independently from stem1k's word frequencies, the
    lengths of its passages, plus `noise` made-up Zipf(1.2) words; stem1k's questions as queries beside it."""
    import numpy as np

    real, queries = _real_passages()
    words = np.array([w for p in real for w in p.split()])
    lengths = np.array([len(p.split()) for p in real])
    rng = np.random.default_rng(seed)

    def chunk(start: int, m: int) -> list[str]:
        size = lengths[rng.integers(0, len(lengths), size=m)]
        drawn = np.split(words[rng.integers(0, len(words), size=int(size.sum()))], np.cumsum(size)[:-1])
        texts = [
            f"{' '.join(a)} {' '.join(b)}" for a, b in zip(drawn, _made_up(rng, (size * noise).astype(int), vocab))
        ]
        if start == 0:
            texts[: min(len(real), m)] = real[:m]
        return texts

    _write_corpus(path, n, "u", chunk, queries)


def _real_passages() -> tuple[list[str], list[str]]:
    """(stem1k's contexts cut into passages as mcq cuts them, stem1k's questions as query texts)."""
    from mcq.retrieve.settings import PassageSettings
    from mcq.retrieve.split import split_article

    contexts, queries, _, _ = stem1k()
    return [p for c in contexts for p in split_article(c, PassageSettings())], queries


def _made_up(rng, counts, vocab: int) -> list:
    """`counts[i]` made-up words for passage i, Zipf(1.2)-distributed over `vocab` (a large corpus' long tail)."""
    import numpy as np

    ranks = np.minimum(rng.zipf(1.2, size=int(np.sum(counts))), vocab)
    return np.split(np.char.add("zq", np.char.mod("%x", ranks)), np.cumsum(counts)[:-1])


def _write_corpus(path: Path, n: int, prefix: str, chunk: Callable[[int, int], list[str]], queries: list[str]):
    """n passages as Parquet, 100k-row groups of chunk(start, rows); the queries beside it (.queries.json)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        table = pa.table({"id": [f"{prefix}{start + i}" for i in range(m)], "text": chunk(start, m)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None, "no passages asked for"
    writer.close()
    path.with_suffix(".queries.json").write_text(json.dumps(queries))


def median_run(runs: list[dict]) -> dict:
    """Each figure's median over repeated search runs, and every run's ms/query."""
    import statistics

    out = {k: statistics.median(r[k] for r in runs) for k, v in runs[0].items() if isinstance(v, (int, float))}
    return runs[0] | out | {"query_ms_0_runs": [r["query_ms_0"] for r in runs]}


def one_size(path: Path, phase: str, tag: str = "after") -> dict:
    """Build (phase build) or load and query (phase search) our BM25 over one synthetic corpus in this process,
    with whichever mcq is first on sys.path (the code under test, or --before's)."""
    import numpy as np

    from mcq.retrieve.index import build_index, open_index

    out = path.parent / f"{path.stem}-{tag}-index"
    if phase == "build":
        import mcq.retrieve.index as module  # noqa: F401  (imports before the clock starts)

        start = time.perf_counter()
        manifest = build_index([path], out)
        return {
            "passages": manifest["passages"],
            "build_s": time.perf_counter() - start,
            "read_s": manifest["read_s"],
            "rss": peak_rss(),
            "disk": manifest["disk_bytes"],
            "ram_estimate": manifest["ram_bytes"],
        }
    start = time.perf_counter()
    index = open_index(out)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    if path.with_suffix(".queries.json").is_file():  # the wiki corpus: real questions
        queries = json.loads(path.with_suffix(".queries.json").read_text())
    else:
        sample = [index.passages([int(i)])[0].text for i in rng.integers(0, len(index), size=1000)]
        queries = [" ".join(rng.choice(t.split(), size=40)) for t in sample]
    searcher = index.searchers["bm25"]
    figures = {"load_s": load_s, "queries": len(queries)}
    if hasattr(searcher, "df"):  # how many postings a query's words hold, in corpora of their size
        words = searcher.tokenizer.streaming_tokenize(queries, update_vocab=False)
        figures["posting_share"] = float(np.mean([searcher.df[np.unique(w)].sum() / len(index) for w in words]))
    for terms in (0, 24) if hasattr(searcher, "query_terms") else (0,):
        if terms:
            searcher.query_terms = terms
        start = time.perf_counter()
        for i in range(0, len(queries), 100):
            index.search(queries[i : i + 100], 5)
        figures[f"query_ms_{terms}"] = (time.perf_counter() - start) * 1000 / len(queries)
    figures["search_rss"] = peak_rss()
    return figures


CORPORA: dict[str, Callable[[Path, int], None]] = {"wiki": wiki_like, "unigram": unigram_like, "zipf": synthetic}


def child(*args: str, source: Path | None = None) -> dict:
    """Run this script in its own process; with `source`, against the mcq in that source tree."""
    import os

    env = dict(os.environ, PYTHONPATH=str(source)) if source else None
    proc = subprocess.run([sys.executable, str(HERE), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{args}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--before", type=Path, help="a source tree of the code before (git worktree add DIR REV): "
                        "each size is built and searched with both, in their own processes")  # fmt: skip
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--corpus", choices=list(CORPORA), default="wiki", help="see above")
    parser.add_argument("--max-rss-gib", type=float, default=12.0, help="stop growing before a size would pass this")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--size-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phase", default="build", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help="search runs of each code, taking turns (medians)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_baseline(args.one)))
        return 0
    if args.size_file:
        print(json.dumps(one_size(args.size_file, args.phase, args.tag)))
        return 0
    figures: dict = {"corpus": args.corpus, "baselines": {}, "sizes": []}
    if not args.skip_baselines and STEM1K.is_file():
        baselines(figures, args.before)
    work = Path(tempfile.mkdtemp(prefix="retrieve-scale-"))
    codes = {"after": None} | ({"before": args.before} if args.before else {})
    for n in sorted(args.sizes):
        if figures["sizes"]:
            last = figures["sizes"][-1]
            projected = max(f["rss"] for f in last.values()) * n / last["after"]["passages"]
            if projected > args.max_rss_gib * GIB:
                print(f"stopped before {n} passages: projected RSS {projected / GIB:.1f} GiB > {args.max_rss_gib}")
                break
        path = work / f"syn{n}.parquet"
        CORPORA[args.corpus](path, n)
        row = {}
        for name, source in codes.items():  # the same corpus, each code in its own processes
            row[name] = child("--size-file", str(path), "--tag", name, source=source)
        runs: dict = {name: [] for name in codes}
        for _ in range(args.repeats):  # searches take turns, A B A B, so a drifting machine slows both alike
            for name, source in codes.items():
                runs[name].append(child("--size-file", str(path), "--phase", "search", "--tag", name, source=source))
        for name in codes:
            row[name] |= median_run(runs[name])
            subprocess.run(["rm", "-rf", str(work / f"syn{n}-{name}-index")])
        if "before" in runs:
            pairs = [a["query_ms_0"] / b["query_ms_0"] for a, b in zip(runs["after"], runs["before"])]
            row["after"]["query_ratio_pairs"] = pairs
        figures["sizes"].append(row)
        print(f"{n}: {json.dumps(row)}", flush=True)
        path.unlink()
        path.with_suffix(".queries.json").unlink(missing_ok=True)
    print_sizes(figures, codes)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


GIB = 2**30


def baselines(figures: dict, before: Path | None) -> None:
    for kind in ("ours", "rank-bm25", "sklearn"):
        figures["baselines"][kind] = child("--one", kind)
    if before:
        figures["baselines"]["ours before"] = child("--one", "ours", source=before)
    ours = figures["baselines"]["ours"]
    print("\n| system (1k stem1k contexts) | build s | queries/s | peak RSS MiB | recall@5 | queries/s vs ours |")
    print("|---|---|---|---|---|---|")
    for kind, f in figures["baselines"].items():
        print(
            f"| {kind} | {f['build_s']:.2f} | {f['qps']:.0f} | {f['rss'] / 2**20:.0f} | {f['recall5']:.3f} | "
            f"{f['qps'] / ours['qps']:.3f}x |"
        )


def print_sizes(figures: dict, codes: dict) -> None:
    print(
        "\n| passages | code | build s | of which read+split s | build peak RSS GiB | index GiB | load s | "
        "ms/query | ms/query, 24 rarest words | search peak RSS GiB | postings a query reads / passages |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in figures["sizes"]:
        for name in codes:
            f = row[name]
            pruned = f"{f['query_ms_24']:.2f}" if "query_ms_24" in f else "-"
            print(
                f"| {f['passages']:,} | {name} | {f['build_s']:.1f} | {f['read_s']:.1f} | {f['rss'] / GIB:.2f} | "
                f"{f['disk'] / GIB:.3f} | {f['load_s']:.2f} | {f['query_ms_0']:.2f} | {pruned} | "
                f"{f['search_rss'] / GIB:.2f} | {f.get('posting_share', float('nan')):.2f} |"
            )
        if "before" in row:
            a, b = row["after"], row["before"]
            pairs = a.get("query_ratio_pairs", [a["query_ms_0"] / b["query_ms_0"]])
            spread = f" ({min(pairs):.2f}–{max(pairs):.2f} over {len(pairs)} pairs)" if len(pairs) > 1 else ""
            print(
                f"| | after / before | {a['build_s'] / b['build_s']:.2f} | | {a['rss'] / b['rss']:.2f} | "
                f"{a['disk'] / b['disk']:.2f} | | {sorted(pairs)[len(pairs) // 2]:.2f}{spread} | | | |"
            )
    if len(figures["sizes"]) < 2:
        return
    for name in codes:
        a, b = figures["sizes"][-2][name], figures["sizes"][-1][name]

        def at(key, a=a, b=b):  # linear through the two largest sizes
            slope = (b[key] - a[key]) / (b["passages"] - a["passages"])
            return b[key] + slope * (TARGET - b["passages"])

        per_q = {t: at(f"query_ms_{t}") for t in (0, 24) if f"query_ms_{t}" in b}
        figures.setdefault("projection", {})[name] = {"build_h": at("build_s") / 3600, "rss_gib": at("rss") / GIB,
                                                      "disk_gib": at("disk") / GIB, "query_ms": per_q}  # fmt: skip
        minutes = ", ".join(f"{ms * 4000 / 60000:.1f} min ({'all words' if t == 0 else f'{t} rarest'})"
                            for t, ms in per_q.items())  # fmt: skip
        print(
            f"\n{name}: projection to {TARGET:,} passages (linear through the two largest sizes): build "
            f"{at('build_s') / 3600:.2f} h, build peak RSS {at('rss') / GIB:.1f} GiB, index {at('disk') / GIB:.1f} "
            f"GiB, 4,000 questions: {minutes}. Kaggle: ~{KAGGLE['ram_gib']:.0f} GiB RAM, {KAGGLE['disk_gib']:.0f} "
            f"GiB working disk, {KAGGLE['hours']:.0f} h."
        )


if __name__ == "__main__":
    sys.exit(main())
