"""Cutting articles into passages: paragraphs, sentence windows with whole-sentence overlap, and the settings."""

from __future__ import annotations

import pytest
from conftest import sentences

from mcq.errors import RetrievalError
from mcq.retrieve.settings import PassageSettings
from mcq.retrieve.split import paragraphs, split_article, windows


def n_words(text: str) -> int:
    return len(text.split())


# --- paragraphs ---------------------------------------------------------------------------------


def test_paragraphs_split_at_blank_lines_and_collapse_white_space():
    text = "First  line\nstill the first.\n\n   Second\tparagraph  here.  \n \n\nThird."
    assert paragraphs(text) == ["First line still the first.", "Second paragraph here.", "Third."]


def test_paragraphs_split_at_crlf_blank_lines():
    assert paragraphs("One one.\r\n\r\nTwo two.\r\n") == ["One one.", "Two two."]


def test_empty_and_blank_text_has_no_paragraph():
    assert paragraphs("") == []
    assert paragraphs(" \n\n \t\n") == []


def test_a_short_heading_joins_the_next_paragraph():
    text = "History\n\nThe town was founded by fishermen long ago.\n\nIt grew into a busy port."
    assert paragraphs(text, min_words=5) == [
        "History The town was founded by fishermen long ago.",
        "It grew into a busy port.",
    ]


def test_short_paragraphs_in_a_row_join_until_long_enough():
    assert paragraphs("Part one\n\nChapter two\n\nAnd then the story begins.", min_words=5) == [
        "Part one Chapter two And then the story begins."
    ]


def test_a_trailing_short_paragraph_joins_the_previous_one():
    text = "Second paragraph with five words.\n\nEnd."
    assert paragraphs(text, min_words=5) == ["Second paragraph with five words. End."]


def test_a_paragraph_of_exactly_min_words_stands_alone():
    assert paragraphs("One two three.\n\nFour five six.", min_words=3) == ["One two three.", "Four five six."]


def test_only_short_paragraphs_make_one():
    assert paragraphs("Short.\n\nAlso short.", min_words=5) == ["Short. Also short."]


# --- windows ------------------------------------------------------------------------------------


def test_text_no_longer_than_max_words_is_one_window():
    assert windows("Cats purr. Dogs bark.", max_words=4, overlap_words=1) == ["Cats purr. Dogs bark."]
    assert windows("one two three", max_words=10, overlap_words=2) == ["one two three"]


def test_empty_text_has_no_window():
    assert windows("", max_words=10, overlap_words=2) == []
    assert windows("   ", max_words=10, overlap_words=2) == []


def test_windows_pack_whole_sentences_without_overlap():
    text = "One two three. Four five six. Seven eight nine ten."
    assert windows(text, max_words=5, overlap_words=0) == ["One two three.", "Four five six.", "Seven eight nine ten."]


def test_windows_pack_several_sentences_up_to_max_words():
    text = "One two three. Four five six. Seven eight nine."
    assert windows(text, max_words=7, overlap_words=0) == ["One two three. Four five six.", "Seven eight nine."]


def test_each_window_repeats_the_last_whole_sentences_that_fit_the_overlap():
    text = "Cats purr. Dogs bark. Birds sing. Fish swim."
    assert windows(text, max_words=5, overlap_words=2) == [
        "Cats purr. Dogs bark.",
        "Dogs bark. Birds sing.",
        "Birds sing. Fish swim.",
    ]


def test_a_sentence_longer_than_the_overlap_is_not_repeated():
    text = "One two three. Four five six. Seven eight nine."
    assert windows(text, max_words=7, overlap_words=2) == ["One two three. Four five six.", "Seven eight nine."]


def test_overlap_takes_two_short_sentences_when_both_fit():
    text = "Aa bb. Cc dd. Ee ff. Gg hh ii jj."
    # overlap 4: the two trailing 2-word sentences are repeated, then the 4-word one needs room
    assert windows(text, max_words=8, overlap_words=4) == ["Aa bb. Cc dd. Ee ff.", "Cc dd. Ee ff. Gg hh ii jj."]


def test_a_sentence_longer_than_max_words_is_cut_by_words():
    words = [f"w{i}" for i in range(1, 26)]
    assert windows(" ".join(words), max_words=10, overlap_words=0) == [
        " ".join(words[0:10]),
        " ".join(words[10:20]),
        " ".join(words[20:25]),
    ]


def test_the_pieces_of_a_long_sentence_overlap_by_overlap_words():
    words = [f"w{i}" for i in range(1, 26)]
    assert (
        windows(" ".join(words), max_words=10, overlap_words=2)
        == [
            " ".join(words[0:10]),  # w1..w10
            " ".join(words[8:18]),  # w9..w18
            " ".join(words[16:25]),  # w17..w25
        ]
    )


def test_a_long_sentence_between_short_ones():
    long = " ".join(f"W{i}" for i in range(1, 13)) + "."  # capitals: each W starts no new sentence (no period)
    text = f"Short start. {long} Short end."
    out = windows(text, max_words=8, overlap_words=0)
    assert out == ["Short start.", "W1 W2 W3 W4 W5 W6 W7 W8", "W9 W10 W11 W12. Short end."]


def test_a_sentence_ends_only_before_a_capital_a_digit_or_a_quote():
    # "start. w1" goes on (lower case after the period); "W7. Next" and "end. 42" break
    text = "Short start. w1 w2 w3 w4 w5 w6 W7. Next one here now. 42 is the end."
    assert windows(text, max_words=10, overlap_words=0) == [
        "Short start. w1 w2 w3 w4 w5 w6 W7.",
        "Next one here now. 42 is the end.",
    ]


def test_windows_of_random_sentences_stay_within_max_words_and_keep_every_sentence_in_order():
    sents = [s.capitalize() + "." for s in sentences(40, seed=3, length=7)]
    sents = [" ".join(s.split()[: 3 + i % 5]).rstrip(".") + "." for i, s in enumerate(sents)]  # 3-7 words
    text = " ".join(sents)
    max_words, overlap = 20, 6
    out = windows(text, max_words, overlap)
    assert len(out) > 1
    assert all(n_words(w) <= max_words for w in out)
    rebuilt: list[str] = []
    for window in out:
        parts = [s + "." for s in window.rstrip(".").split(". ")]
        shared = next(
            j for j in range(len(parts), -1, -1) if j <= len(rebuilt) and rebuilt[len(rebuilt) - j :] == parts[:j]
        )
        assert sum(map(n_words, parts[:shared])) <= overlap  # the repeated part: whole sentences, within the overlap
        rebuilt += parts[shared:]
    assert rebuilt == sents


# --- split_article and settings -----------------------------------------------------------------


def test_split_article_cuts_paragraphs_then_windows_in_order():
    settings = PassageSettings(max_words=10, overlap_words=0, min_words=3)
    text = "Intro\n\nOne two three four five six. Seven eight nine ten eleven twelve.\n\nShort para here."
    assert split_article(text, settings) == [
        "Intro One two three four five six.",
        "Seven eight nine ten eleven twelve.",
        "Short para here.",
    ]


def test_split_article_of_empty_text_is_empty():
    assert split_article("\n\n  \n", PassageSettings()) == []


def test_default_passage_settings_are_valid():
    settings = PassageSettings()
    assert settings.overlap_words < settings.max_words // 2 and settings.min_words >= 0


def test_smallest_valid_passage_settings():
    assert PassageSettings(max_words=10, overlap_words=4, min_words=0).max_words == 10


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_words": 9}, "max_words"),
        ({"max_words": 20, "overlap_words": 10}, "overlap_words"),
        ({"overlap_words": -1}, "overlap_words"),
        ({"min_words": -1}, "min_words"),
    ],
)
def test_passage_settings_reject_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(RetrievalError, match=field):
        PassageSettings(**kwargs)
