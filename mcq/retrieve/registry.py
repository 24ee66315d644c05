"""The retrievers, in one table: for each, the backends it is made of and, for each backend, how it is built
and searched, the Python modules it imports (the kernel checks them) and the pip packages Kaggle's image lacks
(shipped as wheels). The index, the CLI, push-index, the rehearsal and the kernel all read this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcq.retrieve.settings import IndexSettings, SearchSettings


@dataclass(frozen=True)
class Backend:
    """One searchable structure of an index folder."""

    name: str
    modules: tuple[str, ...]  # what it imports: `import X` must work where it searches
    kaggle_lacks: tuple[str, ...]  # pip names of those Kaggle's image does not have
    builder: Callable[[IndexSettings, Path, Path, SearchSettings], Any]  # (settings, build folder, out, search)
    searcher: Callable[[Path, SearchSettings], Any]  # (index folder, search settings)


def _bm25_builder(settings, scratch, out, search):
    from mcq.retrieve.sparse import BM25Builder

    return BM25Builder(scratch)


def _bm25_searcher(folder, search):
    from mcq.retrieve.sparse import BM25Searcher

    return BM25Searcher(folder, search.query_terms, search.threads)


def _tfidf_builder(settings, scratch, out, search):
    from mcq.retrieve.sparse import TfidfBuilder

    return TfidfBuilder(settings.tfidf_max_features)


def _tfidf_searcher(folder, search):
    from mcq.retrieve.sparse import TfidfSearcher

    return TfidfSearcher(folder)


def _dense_builder(settings, scratch, out, search):
    from mcq.retrieve.dense import DenseBuilder

    return DenseBuilder(str(settings.embedder), settings.dense_kind, embeddings_spool(out), search.nprobe)


def _dense_searcher(folder, search):
    from mcq.retrieve.dense import DenseSearcher

    return DenseSearcher(folder, search.nprobe)


def embeddings_spool(out: Path) -> Path:
    """Where a dense build keeps its passage vectors until the index is built: a killed build resumes from it."""
    return out.parent / f".{out.name}.embeddings"


BACKENDS = {
    "bm25": Backend("bm25", ("bm25s",), ("bm25s",), _bm25_builder, _bm25_searcher),
    "tfidf": Backend("tfidf", ("sklearn",), (), _tfidf_builder, _tfidf_searcher),
    "dense": Backend(
        "dense",
        ("faiss", "sentence_transformers"),
        ("faiss-cpu", "sentence-transformers"),
        _dense_builder,
        _dense_searcher,
    ),
}
# a retriever is one backend, or several whose rankings are fused (hybrid: BM25 and dense)
RETRIEVERS: dict[str, tuple[str, ...]] = {
    "bm25": ("bm25",),
    "tfidf": ("tfidf",),
    "dense": ("dense",),
    "hybrid": ("bm25", "dense"),
}


def backends(retriever: str) -> list[Backend]:
    """The backends a retriever is made of."""
    return [BACKENDS[name] for name in RETRIEVERS[retriever]]


def kaggle_lacks(retriever: str) -> list[str]:
    """The pip packages an index of this retriever needs that the kernel must get as wheels."""
    return [wheel for backend in backends(retriever) for wheel in backend.kaggle_lacks]


def modules(retriever: str) -> list[str]:
    """The Python modules searching an index of this retriever imports."""
    return [module for backend in backends(retriever) for module in backend.modules]
