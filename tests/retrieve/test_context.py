"""A question's context: the query, passages joined within a budget, one context per question in order."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import sentences

from mcq.errors import RetrievalError
from mcq.retrieve.context import join_passages, query_text, retrieve_contexts
from mcq.retrieve.index import build_index, open_index
from mcq.retrieve.settings import ContextSettings, IndexSettings, PassageSettings

TOPICS = [
    ("Volcano", "Magma rises through the crust and erupts from a volcano as lava and ash."),
    ("Jupiter", "Jupiter is the largest planet in the solar system, a gas giant with a great red spot."),
    ("Insulin", "The pancreas releases the hormone insulin to lower the sugar level in the blood."),
    ("Penicillin", "Alexander Fleming discovered penicillin, the first antibiotic, in a mould in 1928."),
    ("Saturn", "Saturn is a gas giant planet with bright rings of ice."),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("context")
    pd.DataFrame([{"title": t, "text": x} for t, x in TOPICS]).to_csv(folder / "c.csv", index=False)
    build_index([folder / "c.csv"], folder / "index", IndexSettings("bm25"))
    return open_index(folder / "index")


# --- query --------------------------------------------------------------------------------------


def test_query_is_the_prompt_then_the_non_empty_options():
    assert query_text("What is lava?", ["rock", "", "molten rock", ""]) == "What is lava? rock molten rock"


def test_query_of_nothing_is_empty():
    assert query_text("", ["", ""]) == ""
    assert query_text("Why?", []) == "Why?"


# --- join ---------------------------------------------------------------------------------------


def test_passages_that_fit_are_joined_one_per_line():
    assert join_passages(["ab", "cd", "ef"], 8) == "ab\ncd\nef"  # 2 + 1 + 2 + 1 + 2 = 8: separators count


def test_the_separator_counts_against_the_budget():
    assert join_passages(["aaaa", "bbbb"], 9) == "aaaa\nbbbb"
    assert join_passages(["aaaa", "bbbb", "cccc"], 9) == "aaaa\nbbbb"  # no room left for a third


def test_the_passage_that_does_not_fit_is_cut_at_a_word():
    # room for the second: 12 - 4 - 1 = 7 characters, "bbbb cccc"[:7] = "bbbb cc" -> "bbbb"
    assert join_passages(["aaaa", "bbbb cccc dddd"], 12) == "aaaa\nbbbb"


def test_a_first_passage_longer_than_the_budget_is_cut():
    assert join_passages(["one two three four", "five"], 9) == "one two"  # "one two t" cut at its last space
    assert join_passages(["x" * 80], 50) == "x" * 50  # no space: cut at the budget


def test_nothing_to_join_is_empty():
    assert join_passages([], 100) == ""


def test_joined_passages_never_exceed_the_budget_and_keep_their_order():
    texts = sentences(8, seed=5, length=15)
    for max_chars in (50, 97, 200, 333, 1000, 5000):
        joined = join_passages(texts, max_chars)
        assert 0 < len(joined) <= max_chars
        lines = joined.split("\n")
        assert lines[:-1] == texts[: len(lines) - 1]  # whole passages, in order
        last = texts[len(lines) - 1]
        assert last.startswith(lines[-1])  # the last one whole or its beginning
    assert join_passages(texts, 5000) == "\n".join(texts)


def test_a_later_passage_is_never_cut_inside_a_word():
    # room for the second: 8 - 4 - 1 = 3 characters, less than its first word "bbbb"
    assert join_passages(["aaaa", "bbbb cccc"], 8) == "aaaa"
    # a last word that fits exactly is kept: room 9 - 5 = 4 = len("bbbb")
    assert join_passages(["aaaa", "bbbb cccc"], 9) == "aaaa\nbbbb"


# --- retrieve -----------------------------------------------------------------------------------


def test_one_context_per_question_in_order_best_passage_first(index):
    prompts = ["Which hormone lowers blood sugar?", "Who discovered penicillin?", "What erupts from a volcano?"]
    options = [["insulin", "glucagon", ""], ["Fleming", "Curie", "Darwin"], ["lava", "ash", "water"]]
    contexts = retrieve_contexts(index, prompts, options, ContextSettings(k=2, max_chars=1000))
    assert len(contexts) == 3
    assert contexts[0].startswith(f"Insulin: {TOPICS[2][1]}")
    assert contexts[1].startswith(f"Penicillin: {TOPICS[3][1]}")
    assert contexts[2].startswith(f"Volcano: {TOPICS[0][1]}")


def test_k_passages_are_joined_best_first(index):
    contexts = retrieve_contexts(
        index, ["Which gas giant planet has rings?"], [["Saturn", "Jupiter"]], ContextSettings(k=2, max_chars=1000)
    )
    assert contexts == [f"Saturn: {TOPICS[4][1]}\nJupiter: {TOPICS[1][1]}"]
    one = retrieve_contexts(
        index, ["Which gas giant planet has rings?"], [["Saturn", "Jupiter"]], ContextSettings(k=1)
    )
    assert one == [f"Saturn: {TOPICS[4][1]}"]


def test_contexts_stay_within_max_chars(index):
    prompts = ["Which gas giant planet has rings?", "What is the largest planet?"]
    contexts = retrieve_contexts(index, prompts, [["a", "b"], ["c", "d"]], ContextSettings(k=3, max_chars=60))
    assert all(0 < len(c) <= 60 for c in contexts)
    assert contexts[1].startswith("Jupiter: Jupiter is the largest planet")


def test_a_question_without_a_match_gets_an_empty_context(index):
    contexts = retrieve_contexts(
        index, ["zyxwv?", "Who discovered penicillin?"], [["qqq"], ["Fleming"]], ContextSettings()
    )
    assert contexts[0] == "" and contexts[1].startswith("Penicillin:")


def test_no_title_in_the_context_when_the_index_has_none(tmp_path):
    pd.DataFrame([{"title": "Moon", "text": "The Moon orbits the Earth every month."}]).to_csv(tmp_path / "c.csv")
    settings = IndexSettings("bm25", PassageSettings(title_in_text=False))
    build_index([tmp_path / "c.csv"], tmp_path / "index", settings)
    contexts = retrieve_contexts(open_index(tmp_path / "index"), ["What orbits Earth?"], [["Moon"]], ContextSettings())
    assert contexts == ["The Moon orbits the Earth every month."]


def test_more_questions_than_a_query_batch_keep_their_order(index, monkeypatch):
    import mcq.retrieve.context as context

    monkeypatch.setattr(context, "QUERY_BATCH", 2)
    prompts = ["penicillin?", "volcano?", "insulin?", "Saturn rings?", "Jupiter spot?"]
    contexts = retrieve_contexts(index, prompts, [[]] * 5, ContextSettings(k=1))
    assert [c.split(":")[0] for c in contexts] == ["Penicillin", "Volcano", "Insulin", "Saturn", "Jupiter"]


# --- settings -----------------------------------------------------------------------------------


def test_context_settings_reject_bad_values():
    with pytest.raises(RetrievalError, match="k: need at least one passage"):
        ContextSettings(k=0)
    with pytest.raises(RetrievalError, match="at least 50 characters"):
        ContextSettings(max_chars=49)
    assert ContextSettings(k=1, max_chars=50).max_chars == 50
