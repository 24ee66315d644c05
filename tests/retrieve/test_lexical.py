"""Lexical evidence: words and terms, document frequencies and IDF, option support, and sentence selection."""

from __future__ import annotations

import json
import math

import pytest

from mcq.retrieve.lexical import (
    DocFreq,
    DocFreqCounter,
    content_words,
    option_terms,
    pick_sentences,
    sentence_scores,
    split_sentences,
    stop_words,
    support,
    terms,
    words,
)

# four documents: 'energy' in three, 'photon' in one (twice there), 'electron', 'proton' and 'orbit' in one each
DOCS = ["energy photon photon", "Energy and the electron", "energy proton", "orbit"]


def idf(n: int, df: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


# --- words and terms ----------------------------------------------------------------------------


def test_words_are_cut_as_bm25s_cuts_them_so_a_bm25_index_counts_the_same_words():
    """Lower case, two or more word characters (bm25s' and scikit-learn's rule): single letters and digits go."""
    assert words("The Quick_brown FOX, 42 jumps a 7!") == ["the", "quick_brown", "fox", "42", "jumps"]
    assert words("") == [] and words(" ,.;_ ") == []


def test_content_words_drop_scikit_learn_stop_words_and_keep_digits_in_order():
    assert {"the", "of", "which", "is"} <= stop_words()
    assert content_words("Which of the photons is 42 eV energy?") == ["photons", "42", "ev", "energy"]


def test_terms_are_content_words_and_bigrams_of_consecutive_content_words():
    # content words: red, giant, star, photon ('is a' and 'the' dropped, so 'star photon' is consecutive)
    assert terms("The red giant is a star, photon") == {
        "red",
        "giant",
        "star",
        "photon",
        "red giant",
        "giant star",
        "star photon",
    }
    assert terms("the of which") == set()


# --- DocFreq --------------------------------------------------------------------------------------


def test_doc_freq_counts_each_word_once_per_document_and_skips_stop_words():
    freq = DocFreq.of(DOCS)
    assert freq.n == 4
    assert freq.df == {"energy": 3, "photon": 1, "electron": 1, "proton": 1, "orbit": 1}


def test_idf_by_hand_for_a_seen_and_an_unseen_word():
    freq = DocFreq.of(DOCS)
    # energy: log(1 + (4 - 3 + 0.5) / (3 + 0.5)) = log(1 + 1.5/3.5) = log(10/7)
    assert freq.idf("energy") == pytest.approx(math.log(10 / 7))
    # photon (df 1, though twice in its document): log(1 + 3.5/1.5) = log(10/3)
    assert freq.idf("photon") == pytest.approx(math.log(10 / 3))
    # unseen (df 0): log(1 + 4.5/0.5) = log(10)
    assert freq.idf("neutron") == pytest.approx(math.log(10))


def test_a_bigram_weighs_the_sum_of_its_words():
    freq = DocFreq.of(DOCS)
    # log(10/7) + log(10/3)
    assert freq.idf("energy photon") == pytest.approx(math.log(10 / 7) + math.log(10 / 3))


def test_rarer_words_weigh_more_and_every_weight_is_positive():
    freq = DocFreq(10, {"common": 10, "usual": 5, "rare": 1})
    weights = [freq.idf(w) for w in ("common", "usual", "rare", "unseen")]
    assert weights == sorted(weights) and len(set(weights)) == 4
    # in every document: log(1 + 0.5/10.5) > 0
    assert weights[0] == pytest.approx(math.log(1 + 0.5 / 10.5)) and weights[0] > 0


def test_save_and_load_keep_n_and_drop_words_below_min_df(tmp_path):
    freq = DocFreq.of(DOCS)
    path = tmp_path / "doc_freq.json"
    freq.save(path, min_df=2)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw == {"n": 4, "min_df": 2, "df": {"energy": 3}}
    back = DocFreq.load(path)
    assert back == DocFreq(4, {"energy": 3})
    assert back.idf("energy") == pytest.approx(freq.idf("energy"))
    # dropped words read as unseen: log(1 + 4.5/0.5) = log(10), not photon's log(10/3)
    assert back.idf("photon") == pytest.approx(math.log(10)) == pytest.approx(back.idf("neutron"))


def test_save_with_min_df_1_keeps_every_word(tmp_path):
    freq = DocFreq.of(DOCS)
    freq.save(tmp_path / "f.json", min_df=1)
    assert DocFreq.load(tmp_path / "f.json") == freq


def test_counter_fed_in_chunks_matches_doc_freq_of():
    counter = DocFreqCounter()
    counter.add(DOCS[:1])
    counter.add(t for t in DOCS[1:3])  # a generator chunk
    counter.add([])
    counter.add(DOCS[3:])
    assert counter.result() == DocFreq.of(DOCS)
    assert DocFreqCounter().result() == DocFreq(0, {})


# --- option_terms and support ---------------------------------------------------------------------


def test_option_terms_drop_the_terms_every_non_empty_option_shares():
    options = ["red giant star", "white dwarf star", "neutron star", ""]
    # 'star' is in every non-empty option; the empty one (no terms) would otherwise make nothing common
    assert option_terms(options) == [
        {"red", "giant", "red giant", "giant star"},
        {"white", "dwarf", "white dwarf", "dwarf star"},
        {"neutron", "neutron star"},
        set(),
    ]


def test_option_terms_with_one_non_empty_option_keep_all_its_terms():
    assert option_terms(["black hole", "", "  "]) == [{"black", "hole", "black hole"}, set(), set()]


def test_support_is_the_idf_mass_of_distinguishing_terms_in_the_context():
    freq = DocFreq(4, {"energy": 3, "photon": 1, "electron": 1})
    options = ["photon energy", "electron energy", "proton energy", "energy", ""]
    context = "Photon energy is quantised; an electron is bound."
    # shared by every non-empty option: 'energy'. context terms: photon, energy, quantised, electron, bound and
    # the bigrams 'photon energy', 'energy quantised', 'quantised electron', 'electron bound'
    photon, energy = math.log(10 / 3), math.log(10 / 7)
    expected = [
        photon + (photon + energy),  # 'photon' and the bigram 'photon energy'
        photon,  # electron (df 1, same weight as photon); 'electron energy' is not in the context
        0.0,  # proton is not in the context
        0.0,  # no distinguishing term at all (its one word is shared), though 'energy' is in the context
        0.0,  # empty
    ]
    assert support(options, context, freq) == pytest.approx(expected)


def test_support_of_an_empty_context_is_zero():
    assert support(["photon", "electron"], "", DocFreq.of(DOCS)) == [0.0, 0.0]


# --- sentences --------------------------------------------------------------------------------------


def test_split_sentences_take_each_line_and_cut_at_sentence_ends():
    context = "\nCats purr. Dogs bark.\n  \n Birds sing! fish swim.\nOrbit?  42 planets\n"
    # a lower-case word after '!' does not start a sentence; blank lines and the leading newline leave nothing
    assert split_sentences(context) == ["Cats purr.", "Dogs bark.", "Birds sing! fish swim.", "Orbit?", "42 planets"]
    assert split_sentences("") == [] and split_sentences(" \n \n ") == []


def test_sentence_scores_are_the_idf_mass_of_the_query_terms_each_sentence_holds():
    freq = DocFreq.of(DOCS)
    photon, energy = math.log(10 / 3), math.log(10 / 7)
    query = "Which photon energy?"  # terms: photon, energy, 'photon energy'
    sents = ["The photon energy.", "An electron.", "Energy of a photon"]
    assert sentence_scores(sents, query, freq) == pytest.approx(
        [
            2 * (photon + energy),  # photon + energy + 'photon energy' (= photon + energy)
            0.0,
            photon + energy,  # 'energy photon' is not the query's bigram
        ]
    )
    assert sentence_scores([], query, freq) == []


def test_pick_sentences_greedy_by_score_and_in_document_order():
    # best is 2 (score 5), then 1 (3): 5 + 5 = 10 fits; returned in document order, not pick order
    assert pick_sentences([1.0, 3.0, 5.0], [5, 5, 5], budget=10) == [1, 2]


def test_pick_sentences_skips_one_that_does_not_fit_for_a_shorter_later_one():
    # 0 (6 words) first; 1 would make 14 > 10, skipped; 2 makes 9
    assert pick_sentences([5.0, 4.0, 3.0], [6, 8, 3], budget=10) == [0, 2]


def test_pick_sentences_fill_the_budget_exactly():
    assert pick_sentences([2.0, 1.0], [4, 6], budget=10) == [0, 1]  # 4 + 6 = 10 <= 10


def test_pick_sentences_ties_go_to_the_earlier_sentence():
    assert pick_sentences([1.0, 2.0, 2.0], [5, 5, 5], budget=5) == [1]
    assert pick_sentences([2.0, 2.0, 2.0], [5, 5, 5], budget=10) == [0, 1]


def test_pick_sentences_keep_the_best_alone_when_nothing_fits():
    assert pick_sentences([1.0, 3.0, 2.0], [20, 30, 25], budget=10) == [1]


def test_pick_sentences_of_nothing_is_empty():
    assert pick_sentences([], [], budget=10) == []
