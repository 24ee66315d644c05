"""Lexical retrievers: BM25 through bm25s (the default) and TF-IDF through scikit-learn (word 1-2-grams).

A builder takes the passages' search texts in order, chunk by chunk, and writes its files into a folder;
a searcher loads them (memory-mapped where the library allows) and returns the top k passage numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mcq.errors import RetrievalError
from mcq.retrieve.ranking import top_k

BM25_DIR = "bm25"
TFIDF_DIR = "tfidf"


def _bm25s():
    try:
        import bm25s
    except ImportError as err:
        raise RetrievalError("the BM25 retriever needs bm25s: pip install 'mcq[retrieve]' (or bm25s)") from err
    return bm25s


class BM25Builder:
    """bm25s' own tokenizer (lower case, English stop words), fed chunk by chunk: only token ids are kept."""

    def __init__(self) -> None:
        self.tokenizer = _bm25s().tokenization.Tokenizer(stopwords="en")
        self.ids: list[np.ndarray] = []

    def add(self, texts: list[str]) -> None:
        for doc in self.tokenizer.streaming_tokenize(texts, update_vocab=True):
            self.ids.append(np.asarray(doc, dtype=np.int32))

    def finish(self, folder: Path, texts: Callable[[], Iterable[str]]) -> dict:
        bm25s = _bm25s()
        model = bm25s.BM25()
        model.index(self.tokenizer.to_tokenized_tuple(self.ids), show_progress=False)
        out = folder / BM25_DIR
        model.save(str(out), show_progress=False)
        self.tokenizer.save_vocab(str(out))
        self.tokenizer.save_stopwords(str(out))
        return {"vocabulary": len(self.tokenizer.get_vocab_dict())}


class BM25Searcher:
    def __init__(self, folder: Path):
        bm25s = _bm25s()
        where = folder / BM25_DIR
        self.model = bm25s.BM25.load(str(where), mmap=True, show_progress=False)
        self.tokenizer = bm25s.tokenization.Tokenizer(stopwords="en")
        self.tokenizer.load_vocab(str(where))
        self.tokenizer.load_stopwords(str(where))
        self.n = int(self.model.scores["num_docs"])

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = list(self.tokenizer.streaming_tokenize(queries, update_vocab=False))
        take = min(k, self.n)
        ids, scores = self.model.retrieve(
            self.tokenizer.to_tokenized_tuple(tokens), k=take, show_progress=False, n_threads=1
        )
        ids, scores = np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float32)
        ids[scores <= 0] = -1  # no query word in the passage: not a match
        return _pad(ids, scores, k)


class TfidfBuilder:
    """scikit-learn's TfidfVectorizer (sublinear tf, word 1-2-grams, English stop words), fitted on the passages."""

    def __init__(self, max_features: int) -> None:
        self.max_features = max_features

    def add(self, texts: list[str]) -> None:  # TF-IDF fits on the whole corpus, read back from the store
        pass

    def finish(self, folder: Path, texts: Callable[[], Iterable[str]]) -> dict:
        from scipy import sparse

        vectorizer = _vectorizer(max_features=self.max_features)
        try:
            vectorizer.fit(texts())
        except ValueError as err:  # scikit-learn's "empty vocabulary; perhaps the documents only contain stop words"
            raise RetrievalError(
                f"TF-IDF: no word to index ({err}); the corpus holds only stop words or no text. Check the text "
                "column, or use --retriever bm25."
            ) from err
        matrix = vectorizer.transform(texts()).astype(np.float32).tocsr()
        out = folder / TFIDF_DIR
        out.mkdir()
        sparse.save_npz(out / "matrix.npz", matrix, compressed=False)
        vocabulary = {term: int(col) for term, col in vectorizer.vocabulary_.items()}
        (out / "vocabulary.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
        np.save(out / "idf.npy", vectorizer.idf_.astype(np.float32))
        return {"vocabulary": len(vocabulary)}


class TfidfSearcher:
    def __init__(self, folder: Path):
        from scipy import sparse

        where = folder / TFIDF_DIR
        vocabulary = json.loads((where / "vocabulary.json").read_text(encoding="utf-8"))
        self.vectorizer = _vectorizer(vocabulary=vocabulary)
        self.vectorizer.idf_ = np.load(where / "idf.npy")
        self.matrix_t = sparse.load_npz(where / "matrix.npz").T.tocsr()  # terms x passages: a query's rows
        self.n = self.matrix_t.shape[1]

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.vectorizer.transform(queries).astype(np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = max(1, min(256, 50_000_000 // max(self.n, 1)))  # dense score rows at a time: <= 200 MB
        for start in range(0, len(queries), rows):
            block = (q[start : start + rows] @ self.matrix_t).toarray()
            block_ids, block_scores = top_k(block, k)
            block_ids[block_scores <= 0] = -1
            block_scores[block_ids < 0] = -np.inf  # no match (or padding): as the BM25 searcher says it
            ids[start : start + rows], scores[start : start + rows] = block_ids, block_scores
        return ids, scores


def _vectorizer(**kw):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english", dtype=np.float32, **kw)


def _pad(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if ids.shape[1] < k:
        extra = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    return ids, scores
