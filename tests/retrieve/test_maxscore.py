"""MaxScore's top k equals exhaustive scoring's, by hand on a tiny matrix and on random Zipf-shaped ones."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import mcq.retrieve.maxscore as maxscore
from mcq.retrieve.maxscore import Columns, max_weights, split_runs, top_candidates
from mcq.retrieve.ranking import top_k


@pytest.fixture(autouse=True)
def prune_every_query(monkeypatch):
    """These matrices are small: without this every query would be summed in one call (FEW), never pruned."""
    monkeypatch.setattr(maxscore, "FEW", 0)


def columns(dense: np.ndarray, runs: bool = True, budget: int = 1 << 22) -> Columns:
    """passages x words -> the CSC arrays bm25s saves, each column split in its two runs (or left whole)."""
    m = sparse.csc_matrix(dense.astype(np.float32))
    m.sort_indices()
    data, indices, indptr = m.data, m.indices.astype(np.int32), m.indptr.astype(np.int64)
    if not runs:
        return Columns.unsplit(indices, data, indptr)
    low_start, bounds = split_runs(data, indices, indptr, budget, split_from=3)
    return Columns(indices, data, indptr, low_start, bounds)


@pytest.mark.parametrize("budget", [1, 3, 1 << 22])  # a column group at a time, whatever its size
def test_split_runs_puts_each_columns_heavy_entries_first_each_run_ascending(budget):
    dense = np.array([[1.0, 0.2, 0.0, 0.0], [0.4, 0.9, 0.0, 0.8], [0.5, 0.0, 0.0, 0.1], [0.8, 1.0, 0.0, 0.0]])
    m = columns(dense, budget=budget)
    # column 0 (largest 1.0): 1.0 and 0.8 above half of it, then 0.4 and 0.5; column 1: 0.9, 1.0, then 0.2;
    # column 3 (two entries) is shorter than split_from (3): one run, passages in order
    assert m.indices.tolist() == [0, 3, 1, 2, 1, 3, 0, 1, 2]
    np.testing.assert_allclose(m.data, [1.0, 0.8, 0.4, 0.5, 0.9, 1.0, 0.2, 0.8, 0.1])
    assert m.low_start.tolist() == [2, 6, 7, 9]  # the empty column's runs are both empty
    np.testing.assert_allclose(m.max_weight, [[1.0, 0.5], [1.0, 0.2], [0.0, 0.0], [0.8, 0.0]])


def test_max_weights_are_each_columns_largest_and_zero_for_empty_columns():
    data = np.array([1.0, 3.0, 2.0, 5.0, 4.0], dtype=np.float32)
    indptr = np.array([0, 0, 3, 3, 5, 5])  # empty first, middle and last columns
    assert max_weights(data, indptr).tolist() == [0.0, 3.0, 0.0, 5.0, 0.0]


def test_long_columns_are_only_looked_up_once_the_rare_word_decides_the_top():
    # word 0: rare and heavy (passages 2 and 7); word 1: in every passage, light (0.1, or 0.3 at passage 5)
    dense = np.zeros((10, 2))
    dense[[2, 7], 0] = [5.0, 4.0]
    dense[:, 1] = 0.1
    dense[5, 1] = 0.3
    buffer = np.zeros(10, dtype=np.float32)
    found, score = top_candidates(columns(dense, runs=False), np.array([0, 1]), np.array([1, 1]), 1, buffer)
    # after word 0 the best is 5.0 and word 1 adds at most 0.3: only passage 2 can still win (7 reaches 4.3)
    assert found.tolist() == [2]
    np.testing.assert_allclose(score, [5.1], rtol=1e-6)
    assert not buffer.any()  # handed back zeroed
    found, score = top_candidates(columns(dense, runs=False), np.array([0, 1]), np.array([1, 1]), 3, buffer)
    # a third passage needs word 1 in full: read whole, the passages below the third best (0.3) drop out
    assert found.tolist() == [2, 5, 7]
    np.testing.assert_allclose(score, [5.1, 0.3, 4.1], rtol=1e-6)


def test_a_repeated_word_counts_as_often_as_it_is_repeated():
    dense = np.array([[1.0, 0.0], [0.0, 1.5], [0.9, 0.0]])
    found, score = top_candidates(columns(dense), np.array([0, 1]), np.array([2, 1]), 1, np.zeros(3, np.float32))
    best, top = top_k(score[None], 1)
    assert found[best[0][0]] == 0 and top[0][0] == pytest.approx(2.0)


def test_no_word_with_a_passage_finds_nothing():
    dense = np.array([[1.0, 0.0], [0.5, 0.0]])
    found, score = top_candidates(columns(dense), np.array([1]), np.array([1]), 5, np.zeros(2, np.float32))
    assert len(found) == len(score) == 0


@pytest.mark.parametrize("few", [0, 1 << 30])  # pruned, or every query summed in one call
@pytest.mark.parametrize("runs", [True, False])
@pytest.mark.parametrize("k", [1, 5, 30])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_top_k_equals_exhaustive_scoring_on_zipf_shaped_columns(k, seed, runs, few, monkeypatch):
    monkeypatch.setattr(maxscore, "FEW", few)
    rng = np.random.default_rng(seed)
    n, vocab = 3000, 400
    share = np.minimum(1.0, 0.6 / np.arange(1, vocab + 1) ** 0.9)  # a few words in most passages, most rare
    present = rng.random((n, vocab)) < share
    weights = np.round(rng.gamma(2.0, 1.0, size=(n, vocab)) / np.log1p(share * n), 2)  # rounded: many ties
    matrix = columns(np.where(present, np.maximum(weights, 0.01), 0.0), runs)
    buffer = np.zeros(n, dtype=np.float32)
    pruned = 0
    for _ in range(60):
        words = np.unique(np.r_[rng.integers(0, 20, 8), rng.integers(0, vocab, 12)])
        repeats = rng.integers(1, 3, len(words))
        total = np.zeros(n, dtype=np.float32)  # exhaustive, run by run in the same order (the same float sums)
        starts, ends, bounds, reps = matrix.runs(words, repeats)
        for i in np.argsort(-bounds, kind="stable"):
            a, b = starts[i], ends[i]
            total[matrix.indices[a:b]] += matrix.data[a:b] * np.float32(reps[i])
        found, score = top_candidates(matrix, words, repeats, k, buffer)
        assert not buffer.any()
        everyone = np.flatnonzero(total)
        pruned += len(found) < len(everyone)
        expect_ids, expect = top_k(total[everyone][None], k)
        got_ids, got = top_k(score[None], k)
        np.testing.assert_array_equal(got, expect)
        np.testing.assert_array_equal(found[got_ids[0]], everyone[expect_ids[0]])
    if few:
        assert pruned == 0  # summed in one call: every passage holding a query word
    else:
        assert pruned > 10  # and it does skip passages (else this test would prove nothing about the pruning)


def test_a_bm25_index_on_zipf_words_ranks_as_bm25s_does(tmp_path, monkeypatch):
    bm25s = pytest.importorskip("bm25s")
    import mcq.retrieve.maxscore as maxscore
    from mcq.retrieve.index import build_index, open_index

    monkeypatch.setattr(maxscore, "SPLIT_FROM", 4)  # so this small corpus' common words are split in two runs

    rng = np.random.default_rng(5)
    texts = [" ".join(f"w{i}" for i in np.minimum(rng.zipf(1.3, size=n), 2000)) for n in rng.integers(5, 120, 1500)]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    build_index([tmp_path / "c.csv"], tmp_path / "ix")
    low_start = np.load(tmp_path / "ix" / "bm25" / "low_starts.npy")
    indptr = np.load(tmp_path / "ix" / "bm25" / "indptr.csc.index.npy")
    assert ((low_start > indptr[:-1]) & (low_start < indptr[1:])).sum() >= 10  # words with two runs
    queries = [" ".join(rng.choice(texts[i].split(), size=30)) for i in rng.integers(0, len(texts), 80)]
    ours, our_scores = open_index(tmp_path / "ix").search(queries, 5)
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="en")
    model = bm25s.BM25()
    ids = list(tokenizer.streaming_tokenize(texts, update_vocab=True))
    model.index(tokenizer.to_tokenized_tuple(ids), show_progress=False)
    q = list(tokenizer.streaming_tokenize(queries, update_vocab=False))
    ref, ref_scores = model.retrieve(tokenizer.to_tokenized_tuple(q), k=5, show_progress=False)
    np.testing.assert_allclose(our_scores, ref_scores, rtol=1e-5)
    ties = np.isclose(ref_scores[:, :-1], ref_scores[:, 1:]).any(axis=1)  # bm25s orders tied passages its own way
    np.testing.assert_array_equal(ours[~ties], ref[~ties])


def test_an_index_saved_without_runs_searches_the_same(tmp_path):
    from mcq.retrieve.index import MANIFEST, build_index, open_index

    texts = [f"alpha beta word{i % 7} gamma{i % 3}" for i in range(60)]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    build_index([tmp_path / "c.csv"], tmp_path / "ix")
    before = open_index(tmp_path / "ix").search(["word3 gamma1", "alpha"], 4)
    saved = np.load(tmp_path / "ix" / "bm25" / "max_weights.npy")
    manifest = tmp_path / "ix" / MANIFEST
    data = json.loads(manifest.read_text())
    for name in ("max_weights.npy", "low_starts.npy"):  # as an index built by an older mcq has neither
        (tmp_path / "ix" / "bm25" / name).unlink()
        data["files"].pop(f"bm25/{name}")
    manifest.write_text(json.dumps(data))
    searcher = open_index(tmp_path / "ix").searchers["bm25"]
    np.testing.assert_array_equal(np.asarray(searcher.columns.max_weight)[:, 0], saved[:, 0])
    assert not np.asarray(searcher.columns.max_weight)[:, 1].any()  # one run a column
    after = open_index(tmp_path / "ix").search(["word3 gamma1", "alpha"], 4)
    np.testing.assert_array_equal(before[0], after[0])
