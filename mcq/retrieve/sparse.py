"""Lexical retrievers: BM25 through bm25s (the default) and TF-IDF through scikit-learn (word 1-2-grams).

A builder takes the passages' search texts in order, chunk by chunk, and writes its files into a folder;
a searcher loads them (memory-mapped where the library allows) and returns the top k passage numbers.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mcq.errors import RetrievalError
from mcq.retrieve.bm25_matrix import TokenSpool, bm25_matrix
from mcq.retrieve.lexical import DocFreq
from mcq.retrieve.maxscore import Columns, split_runs, top_candidates
from mcq.retrieve.ranking import top_k

BM25_DIR = "bm25"
SPOOL = ".bm25-tokens.bin"  # token ids while an index builds (removed before it is finished)
MAX_WEIGHTS = "max_weights.npy"  # each run's largest weight: the most it adds to a passage (maxscore.py)
LOW_STARTS = "low_starts.npy"  # where each word's low run starts
TFIDF_DIR = "tfidf"


def _bm25s():
    try:
        import bm25s
    except ImportError as err:
        raise RetrievalError("the BM25 retriever needs bm25s: pip install 'mcq[retrieve]' (or bm25s)") from err
    return bm25s


class BM25Builder:
    """bm25s' own tokenizer (lower case, English stop words), fed chunk by chunk; the token ids go to a file in
    the index's build folder, and the score matrix is built from it in bounded memory (mcq.retrieve.bm25_matrix)
    and saved in bm25s' format."""

    def __init__(self, scratch: Path) -> None:
        self.tokenizer = _bm25s().tokenization.Tokenizer(stopwords="en")
        self.spool = TokenSpool(Path(scratch) / SPOOL)

    def add(self, texts: list[str]) -> None:
        for doc in self.tokenizer.streaming_tokenize(texts, update_vocab=True):
            self.spool.add(np.asarray(doc, dtype=np.int32))

    def finish(self, folder: Path, texts: Callable[[], Iterable[str]]) -> dict:
        bm25s = _bm25s()
        tokens, lengths = self.spool.close()
        vocab = dict(self.tokenizer.get_vocab_dict())
        data, indices, indptr = bm25_matrix(tokens, lengths, len(vocab))
        low_start, bounds = split_runs(data, indices, indptr)  # each column: its high run, then its low run
        del tokens
        self.spool.path.unlink()
        model = bm25s.BM25()  # what BM25.index would set, from our matrix
        model.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": len(lengths)}
        model.vocab_dict = vocab | ({"": max(vocab.values(), default=-1) + 1} if "" not in vocab else {})
        model.unique_token_ids_set = set(model.vocab_dict.values())
        model.nonoccurrence_array = None  # lucene scores need none
        out = folder / BM25_DIR
        model.save(str(out), show_progress=False)
        np.save(out / MAX_WEIGHTS, bounds)
        np.save(out / LOW_STARTS, low_start)
        # lexical evidence's word counts come free from the matrix: each column's length is its word's passages
        df = np.diff(indptr)
        self.doc_freq = DocFreq(len(lengths), {w: int(df[i]) for w, i in vocab.items() if w and i < len(df)})
        self.tokenizer.save_vocab(str(out))
        self.tokenizer.save_stopwords(str(out))
        return {"vocabulary": len(self.tokenizer.get_vocab_dict())}


class BM25Searcher:
    """Scores a query from bm25s' memory-mapped matrix itself: its words' columns (two runs each) are summed,
    largest weight first, until no other passage can reach the top k; the rest are looked up for the passages
    still in reach (mcq.retrieve.maxscore: exact, the top k equal exhaustive scoring's). With `query_terms`
    N > 0 only the query's N rarest words are looked up (lossy: docs/BENCHMARKS.md measures what it costs)."""

    def __init__(self, folder: Path, query_terms: int = 0, threads: int = 0):
        bm25s = _bm25s()
        where = folder / BM25_DIR
        self.model = bm25s.BM25.load(str(where), mmap=True, show_progress=False)
        self.tokenizer = bm25s.tokenization.Tokenizer(stopwords="en")
        self.tokenizer.load_vocab(str(where))
        self.tokenizer.load_stopwords(str(where))
        self.n = int(self.model.scores["num_docs"])
        self.query_terms = query_terms
        self.threads = threads or os.cpu_count() or 1
        m = self.model.scores
        indptr = np.asarray(m["indptr"])
        self.df = np.diff(indptr)  # passages holding each word: rarest first when the query is pruned
        if (where / MAX_WEIGHTS).is_file() and (where / LOW_STARTS).is_file():
            low_start, most = (np.load(where / name, mmap_mode="r") for name in (LOW_STARTS, MAX_WEIGHTS))
            self.columns = Columns(m["indices"], m["data"], indptr, low_start, most)
        else:  # an index of an older mcq: one run a column
            self.columns = Columns.unsplit(m["indices"], m["data"], indptr)
        self.local = threading.local()  # each thread's corpus-sized score buffer

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top k passages of each query; queries are scored in `threads` threads (NumPy's sorts and sums
        release the GIL), results in query order."""
        tokens = [
            np.asarray(w, dtype=np.int64) for w in self.tokenizer.streaming_tokenize(queries, update_vocab=False)
        ]
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)

        def one(row: int) -> None:
            found, score = self.score(tokens[row], k)
            if len(found):
                best, top = top_k(score[None], k)
                keep = best[0] >= 0
                ids[row, : keep.sum()] = found[best[0][keep]]
                scores[row, : keep.sum()] = top[0][keep]

        if self.threads > 1 and len(queries) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(one, range(len(queries))))
        else:
            for row in range(len(queries)):
                one(row)
        return ids, scores

    def score(self, words: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(passages, their BM25 scores), every passage of the top k among them: bm25s' sum over the query's
        words, a repeated word counted as often as it is repeated."""
        words, repeats = np.unique(words, return_counts=True)
        if self.query_terms and len(words) > self.query_terms:
            keep = np.argsort(self.df[words], kind="stable")[: self.query_terms]
            words, repeats = words[keep], repeats[keep]
        return top_candidates(self.columns, words, repeats, k, self._buffer())

    def _buffer(self) -> np.ndarray:
        if getattr(self.local, "buffer", None) is None:
            self.local.buffer = np.zeros(self.n, dtype=np.float32)
        return self.local.buffer


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
