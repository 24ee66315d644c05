"""The streaming BM25 matrix equals bm25s' own, column for column, and an index built with it searches the same."""

import numpy as np
import pytest
from conftest import sentences

from mcq.retrieve.bm25_matrix import TokenSpool, _chunks, bm25_matrix

bm25s = pytest.importorskip("bm25s")


def bm25s_reference(texts):
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="en")
    ids = [np.asarray(d, dtype=np.int32) for d in tokenizer.streaming_tokenize(texts, update_vocab=True)]
    model = bm25s.BM25()
    model.index(tokenizer.to_tokenized_tuple(ids), show_progress=False)
    return ids, len(tokenizer.get_vocab_dict()), model.scores


@pytest.mark.parametrize("budget", [7, 50, 10**6])  # chunks that cut passages' runs, and one chunk for all
def test_the_matrix_equals_bm25s_whatever_the_chunk_size(tmp_path, monkeypatch, budget):
    import mcq.retrieve.bm25_matrix as module

    texts = sentences(120, seed=3, length=25) + ["", "the of and"]  # two passages with no word left
    ids, n_vocab, ref = bm25s_reference(texts)
    spool = TokenSpool(tmp_path / "t.bin")
    for doc in ids:
        spool.add(doc)
    tokens, lengths = spool.close()
    monkeypatch.setattr(module, "CHUNK_TOKENS", budget)
    data, indices, indptr = bm25_matrix(tokens, lengths, n_vocab)
    np.testing.assert_array_equal(indptr, ref["indptr"])
    np.testing.assert_array_equal(indices, ref["indices"])
    np.testing.assert_allclose(data, ref["data"], rtol=1e-6)


def test_chunks_cover_every_passage_once_and_keep_a_long_one_whole():
    lengths = np.array([3, 0, 10, 2, 2, 1])
    parts = list(_chunks(lengths, budget=4))
    # 3 (+ an empty passage) fit 4; 10 alone is over but kept whole; 2 + 2 fit; the last 1 starts a chunk
    assert [p[:2] for p in parts] == [(0, 2), (2, 3), (3, 5), (5, 6)]
    assert [p[2:] for p in parts] == [(0, 3), (3, 13), (13, 17), (17, 18)]


def test_an_index_built_with_it_searches_as_bm25s_does(tmp_path):
    import pandas as pd

    from mcq.retrieve.index import build_index, open_index

    texts = sentences(200, seed=8, length=30)
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    build_index([tmp_path / "c.csv"], tmp_path / "ix")
    index = open_index(tmp_path / "ix")
    assert not list((tmp_path / "ix").rglob(".bm25-tokens.bin"))
    queries = sentences(20, seed=9, length=12)
    ours, _ = index.search(queries, 5)
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="en")
    ids = list(tokenizer.streaming_tokenize(texts, update_vocab=True))
    model = bm25s.BM25()
    model.index(tokenizer.to_tokenized_tuple(ids), show_progress=False)
    q = list(tokenizer.streaming_tokenize(queries, update_vocab=False))
    ref, _ = model.retrieve(tokenizer.to_tokenized_tuple(q), k=5, show_progress=False)
    np.testing.assert_array_equal(ours, ref)
