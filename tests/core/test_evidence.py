"""Evidence scores (no trained model): lexical support and dense sentence similarity, per option, and the
evidence reader of infer.py that writes a submission from them alone."""

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from conftest import write_questions

from mcq.cli import main_guard
from mcq.core.data import Questions
from mcq.core.evidence import EvidenceScorer, dense_scores, lexical_scores
from mcq.errors import ConfigError
from mcq.infer import cli as infer_cli
from mcq.infer.config import InferConfig
from mcq.retrieve.lexical import DocFreq


def questions(contexts, options, prompts=None):
    n = len(contexts)
    return Questions(
        source="t.csv", ids=[str(i) for i in range(n)], prompts=prompts or ["what is it"] * n,
        options=[list(o) for o in options], letters=tuple("ABCDE"[: len(options[0])]), contexts=list(contexts),
    )  # fmt: skip


def test_lexical_scores_favour_the_option_the_context_names_and_zero_without_context():
    freq = DocFreq(10, {"photon": 1, "electron": 9, "light": 9})
    q = questions(
        ["The photon carries light.", ""],
        [["photon particle", "electron particle", "neutron particle"], ["photon", "electron", "neutron"]],
    )
    scores = lexical_scores(q, freq)
    assert scores.shape == (2, 3)
    # 'particle' is shared by every option and dropped; 'photon' (df 1 of 10) is in the context
    assert scores[0, 0] == pytest.approx(np.log(1 + (10 - 1 + 0.5) / 1.5), rel=1e-6)
    assert scores[0, 1] == 0 and scores[0, 2] == 0
    assert (scores[1] == 0).all()  # no context: neutral


def bag_of_words(texts):
    """A deterministic stand-in embedder: normalised word counts over a fixed vocabulary."""
    vocab = sorted({w for t in texts for w in re.findall(r"\w+", t.lower())})
    out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            out[i, vocab.index(w)] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_dense_scores_take_the_best_sentence_of_the_context_for_each_option():
    q = questions(
        ["Rocks erode slowly. Stars burn hydrogen fuel.\nCells divide often.", ""],
        [["stars burn hydrogen fuel", "cells divide often", "volcanoes erupt"], ["a", "b", "c"]],
        prompts=["", "q"],
    )
    scores = dense_scores(q, bag_of_words)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)  # the same words as the second sentence
    assert scores[0, 1] == pytest.approx(1.0, abs=1e-5)  # the passage on the next line is searched too
    assert scores[0, 2] == pytest.approx(0.0, abs=1e-6)
    assert (scores[1] == 0).all()


def test_asking_dense_evidence_without_an_embedder_is_one_clear_error():
    scorer = EvidenceScorer(DocFreq())
    assert scorer.kinds == ("lexical",)
    with pytest.raises(ConfigError, match="needs an embedder"):
        scorer.scores(questions(["x"], [["a", "b"]]), ["lexical", "dense"])


@pytest.fixture
def context_file(tmp_path):
    """Questions whose context holds the answer's words: the evidence reader must beat chance on them."""
    path = write_questions(tmp_path / "q.csv", 30, seed=3, context=True)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["context"] = [f"{row['context']}. {row[row['answer']]} is the key." for _, row in frame.iterrows()]
    frame.to_csv(path, index=False)
    return path


def test_the_evidence_reader_writes_a_submission_with_no_model(context_file, tmp_path, capsys):
    out = tmp_path / "o" / "submission.csv"
    argv = ["--reader", "evidence", "--test", str(context_file), "--out", str(out)]
    assert infer_cli.main(argv) == 0
    printed = capsys.readouterr().out
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(sub) == 30 and all(len(set(p.split())) == 3 for p in sub["prediction"])
    found = re.search(r"MAP@3 lexical: ([0-9.]+)", printed)
    assert found is not None
    lexical = float(found.group(1))
    assert lexical > 0.6  # chance is 0.37 on five options
    assert "no model (evidence scores)" in printed
    assert {p.name for p in out.parent.iterdir()} == {
        "submission.csv",
        "evidence_lexical.npy",
        "logits_blend.npy",
        "inference.json",
    }


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "has no context column and no --index"),
        (["--models", "runs/x"], "scores without models"),
        (["--evidence", "dense"], "needs an embedder and no --index was given"),
    ],
)
def test_evidence_reader_mistakes_are_one_line_before_anything_is_written(tmp_path, capsys, extra, message):
    test = write_questions(tmp_path / "q.csv", 6, seed=4, context="dense" in extra)
    out = tmp_path / "o" / "submission.csv"
    argv = ["--reader", "evidence", "--test", str(test), "--out", str(out), *extra]
    assert main_guard(lambda: infer_cli.main(argv)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.parent.exists()


def test_evidence_flags_belong_to_the_evidence_reader(tmp_path):
    with pytest.raises(ConfigError, match="--reader evidence"):
        dataclasses.replace(InferConfig(test="t.csv"), evidence=["lexical"])
