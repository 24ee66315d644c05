"""Passage storage (issue 24): mcq's hand-written store (JSON lines + a NumPy array of byte offsets) against a
`datasets` Arrow table on disk, on the same synthetic passages: write time, size on disk, open time, and the
time to fetch the k passages of a retrieved context at random (what every question costs at inference).

    python -m bench.passage_store                       # 100k and 1M passages, ~5 min on 2 cores
    python -m bench.passage_store --sizes 20000          # quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python bench/NAME.py: the root, for bench.*

WORDS = np.array(
    "atom cell energy force mass light wave photon electron proton gene protein enzyme carbon oxygen "
    "water acid base salt planet star orbit gravity heat entropy pressure volume current".split()
)


def passages(n: int, seed: int = 0):
    from mcq.retrieve.corpus import Passage

    rng = np.random.default_rng(seed)
    for i in range(n):
        words = WORDS[rng.integers(0, len(WORDS), size=int(rng.integers(60, 121)))]
        yield Passage(f"d{i}", f"title {i}", " ".join(words))


def ours(folder: Path, n: int) -> dict:
    from mcq.retrieve.store import PassageStore, PassageWriter

    start = time.perf_counter()
    writer = PassageWriter(folder)
    for p in passages(n):
        writer.add(p)
    writer.close()
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    store = PassageStore(folder)
    open_s = time.perf_counter() - start
    return {"write_s": write_s, "open_s": open_s, "get": lambda ids: store.get(ids)}


def arrow(folder: Path, n: int) -> dict:
    from datasets import Dataset, load_from_disk

    start = time.perf_counter()

    def rows():
        for p in passages(n):
            yield {"doc": p.doc, "title": p.title, "text": p.text}

    Dataset.from_generator(rows, cache_dir=str(folder.parent / "cache")).save_to_disk(str(folder))
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    table = load_from_disk(str(folder))
    open_s = time.perf_counter() - start
    return {"write_s": write_s, "open_s": open_s, "get": lambda ids: table[ids]["text"]}


def measure(kind: str, n: int, work: Path, contexts: int = 4000, k: int = 3) -> dict:
    folder = work / kind
    folder.mkdir()
    made = (ours if kind == "ours" else arrow)(folder, n)
    rng = np.random.default_rng(1)
    picks = [sorted(int(i) for i in rng.integers(0, n, size=k)) for _ in range(contexts)]
    start = time.perf_counter()
    for ids in picks:
        made["get"](ids)
    fetch_ms = (time.perf_counter() - start) * 1000 / contexts
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder)
    return {"write_s": made["write_s"], "open_s": made["open_s"], "bytes": size, "fetch_ms": fetch_ms}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="passage-store-"))
    rows = []
    print("| passages | store | write s | MiB on disk | open s | ms to fetch a context's 3 passages |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        for kind in ("ours", "datasets (Arrow)"):
            f = measure("ours" if kind == "ours" else "arrow", n, work) | {"n": n, "store": kind}
            rows.append(f)
            print(f"| {n:,} | {kind} | {f['write_s']:.1f} | {f['bytes'] / 2**20:.1f} | {f['open_s']:.2f} | "
                  f"{f['fetch_ms']:.3f} |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
