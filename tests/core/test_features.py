"""Tokenisation: context is cut first, then the prompt, never the option; nested per-option features."""

import logging

import pytest
from conftest import one_question

from mcq.core.batching import pad_to
from mcq.core.data import Questions
from mcq.core.features import MultipleChoiceCollator, encode
from mcq.errors import DataError


def decoded(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=True).split()


def test_long_context_is_cut_before_the_prompt_and_options_stay_whole(tokenizer):
    prompt = "which force acts on the planet"
    options = ["gravity field", "magnet lens", "heat", "light wave", "current"]
    q = one_question(prompt, options, context="atom " * 200)
    features = encode(q, tokenizer, max_length=24)
    for ids, option in zip(features[0]["input_ids"], options):
        words = decoded(tokenizer, ids)
        assert len(ids) == 24
        assert words[: len(prompt.split())] == prompt.split(), "prompt must survive while context can be cut"
        assert words[-len(option.split()) :] == option.split(), "option must never be cut"
        assert "atom" in words  # some context kept


def test_long_prompt_is_cut_when_there_is_no_context_left(tokenizer):
    prompt = "why " + "energy " * 100
    q = one_question(prompt, ["mass", "volume"], context="cloud rock")
    features = encode(q, tokenizer, max_length=16)
    words = decoded(tokenizer, features[0]["input_ids"][0])
    assert words[-1] == "mass" and "cloud" not in words and words[0] == "why"


def test_cut_pairs_are_counted_in_the_log(tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="mcq.core.features")
    short = Questions(
        "mem",
        ["q1", "q2"],
        ["what is heat", "what is light"],
        [["energy", "mass"]] * 2,
        ("A", "B"),
        ["atom " * 100, "wave"],
        [0, 1],
    )
    encode(short, tokenizer, max_length=20)
    assert "mem: 2 of 4 (question, option) pairs (50.0%) reach max_length 20" in caplog.text
    caplog.clear()
    encode(short, tokenizer, max_length=256)
    assert "reach max_length" not in caplog.text


def test_short_input_is_not_padded_and_length_is_the_longest_option(tokenizer):
    q = one_question("what is heat", ["energy", "a force of gravity", "mass", "light", "atom"])
    features = encode(q, tokenizer, max_length=64)
    lengths = [len(x) for x in features[0]["input_ids"]]
    assert len(set(lengths)) > 1 and features[0]["length"] == max(lengths)
    assert features[0]["labels"] == 0


def test_an_option_longer_than_max_length_is_an_error_naming_it(tokenizer):
    q = one_question("what is heat", ["energy", "atom " * 50, "mass"])
    with pytest.raises(DataError, match="question id 'q1', column 'B'"):
        encode(q, tokenizer, max_length=16)


def test_at_inference_a_long_option_is_cut_at_its_end_and_named_once(tokenizer, caplog):
    long = " ".join(["atom", "cell", "wave"] * 40)  # 120 words: far over max_length 16
    q = one_question("what is heat", ["energy", long, "mass"])
    with caplog.at_level(logging.WARNING, logger="mcq.core.features"):
        features = encode(q, tokenizer, max_length=16, cut_long_options=True)
    ids = features[0]["input_ids"]
    assert [len(x) <= 16 for x in ids] == [True, True, True]
    kept = decoded(tokenizer, ids[1])
    assert kept[:3] == ["what", "is", "heat"], "the prompt keeps its place (a quarter of max_length)"
    assert kept[3:] == long.split()[: len(kept) - 3], "the option keeps its beginning"
    assert decoded(tokenizer, ids[0]) == ["what", "is", "heat", "energy"], "other options are untouched"
    [warning] = [r.getMessage() for r in caplog.records]
    assert "1 option(s) longer than max_length 16" in warning and "q1 B (" in warning


def test_collator_pads_to_multiple_of_8_and_reshapes(tokenizer):
    q = Questions(
        "mem",
        ["a", "b"],
        ["what is heat", "which atom"],
        [["energy", "mass"], ["proton", "a very long electron cloud"]],
        ("A", "B"),
        None,
        None,
    )
    features = encode(q, tokenizer, max_length=64)
    batch = MultipleChoiceCollator(tokenizer, pad_to_multiple_of=8)([features[0], features[1]])
    assert batch["input_ids"].shape[:2] == (2, 2) and batch["input_ids"].shape[2] % 8 == 0
    assert "labels" not in batch and "length" not in batch


def test_pad_to():
    assert [pad_to(n, 8) for n in (1, 8, 9, 16, 17)] == [8, 8, 16, 16, 24]
