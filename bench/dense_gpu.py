"""Dense embedding on the device (issue 23): mcq's own embed path in fp32 and in fp16 (`on_gpu_in_fp16`), and on
every GPU when there are several (`_gpu_pool`), with a random all-MiniLM-L6-v2-shaped BERT built in code (the
real weights are 87 MB, more than a device call carries): texts/s, and how many of each text's 5 nearest
neighbours fp16 keeps. bench/gpu_check.py prints these rows after DeBERTa's.

    python bench/dense_gpu.py              # CUDA machine (on a CPU it runs the same code, fp32 twice)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = 3000


def random_sentence_model(folder: Path, seed: int = 0) -> Path:
    """A 6-layer, 384-wide BERT with random weights and a WordPiece vocabulary of made-up words, saved where
    SentenceTransformer loads it (mean pooling, as all-MiniLM-L6-v2)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(seed)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(WORDS))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def texts(n: int, words: int = 40, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{i}" for i in rng.integers(0, WORDS, words)) for _ in range(n)]


def neighbours(vectors: np.ndarray, rows: int, k: int = 5) -> np.ndarray:
    scores = vectors[:rows] @ vectors.T
    np.fill_diagonal(scores[:, :rows], -np.inf)
    return np.argsort(-scores, axis=1)[:, :k]


def rows(n_texts: int = 20_000) -> list[tuple[str, str]]:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return [("dense embedding", "skipped: sentence-transformers is not installed")]
    import torch

    from mcq.retrieve.dense import _gpu_pool, embed, load_embedder, on_gpu_in_fp16

    batch = texts(n_texts)
    out, vectors = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(random_sentence_model(Path(tmp)))
        fp16 = on_gpu_in_fp16(load_embedder(folder))
        for label, model in (("fp32", load_embedder(folder)), ("fp16", fp16)):
            embed(model, batch[:64])
            start = time.perf_counter()
            vectors[label] = embed(model, batch)
            per_s = n_texts / (time.perf_counter() - start)
            out.append(
                (f"dense embedding {label} on {model.device}, {n_texts:,} texts of 40 words", f"{per_s:,.0f} texts/s")
            )
        near = min(500, n_texts)
        same = np.mean([len(set(a) & set(b)) / len(a) for a, b in
                        zip(neighbours(vectors["fp32"], near), neighbours(vectors["fp16"], near))])  # fmt: skip
        out.append(("dense embedding: fp16's top-5 neighbours that fp32 also has", f"{same:.3f}"))
        pool = _gpu_pool(fp16)  # None unless there are several GPUs
        if pool is not None:
            try:
                start = time.perf_counter()
                embed(fp16, batch, pool)
                per_s = n_texts / (time.perf_counter() - start)
            finally:
                fp16.stop_multi_process_pool(pool)
            out.append((f"dense embedding fp16 on {torch.cuda.device_count()} GPUs", f"{per_s:,.0f} texts/s"))
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=20_000, help="texts embedded per row")
    parser.add_argument("--small", action="store_true", help="200 texts: a CPU smoke run")
    args = parser.parse_args()
    for name, value in rows(200 if args.small else args.texts):
        print(f"| {name} | {value} |")
