"""Option-rotation TTA: hand-checked rotations and averages, empties kept last, bad N refused, end to end."""

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from conftest import write_questions

from mcq.cli import main_guard
from mcq.core.data import Questions, read_questions
from mcq.core.metrics import rank_logits, top_k
from mcq.core.model import export_untrained
from mcq.errors import ConfigError
from mcq.infer import cli as infer_cli
from mcq.infer.config import InferConfig
from mcq.infer.run import run_inference
from mcq.infer.submission import make_submission
from mcq.infer.tta import (
    average_rotations,
    check_rotations,
    rotate_questions,
    rotation_shifts,
    stack_rotations,
    unrotate_logits,
)


def questions_of(options, answers=None, contexts=None) -> Questions:
    n = len(options)
    letters = tuple("ABCDE"[: len(options[0])])
    return Questions(
        "hand.csv", [f"q{i}" for i in range(n)], [f"prompt {i}" for i in range(n)], options, letters, contexts, answers
    )


def position_biased_scores(questions: Questions, content: dict, bias: Sequence[float]) -> np.ndarray:
    """A stand-in model that prefers some positions: score = content[option text] + bias[position]."""
    return np.array([[content[text] + bias[j] for j, text in enumerate(opts)] for opts in questions.options])


@pytest.mark.parametrize(
    "n_rotations, n_options, shifts",
    [
        (1, 5, [0]),
        (2, 5, [0, 2]),
        (3, 5, [0, 1, 3]),
        (5, 5, [0, 1, 2, 3, 4]),
        (1, 4, [0]),
        (2, 4, [0, 2]),
        (4, 4, [0, 1, 2, 3]),
        (1, 3, [0]),
        (2, 3, [0, 1]),
        (3, 3, [0, 1, 2]),
    ],
)
def test_rotation_shifts_are_distinct_spread_and_start_at_the_file_order(n_rotations, n_options, shifts):
    assert rotation_shifts(n_rotations, n_options) == shifts


@pytest.mark.parametrize(
    "options, shift, rotated, answer, moved",
    [
        (list("abcde"), 2, list("cdeab"), 0, 3),  # a moves from A to D
        (list("abcde"), 1, list("bcdea"), 4, 3),  # e moves from E to D
        (list("abcd"), 1, list("bcda"), 2, 1),  # c moves from C to B
        (list("abcd"), 2, list("cdab"), 1, 3),
        (list("abc"), 2, list("cab"), 0, 1),
        (list("abc"), 0, list("abc"), 2, 2),
    ],
)
def test_rotated_questions_move_options_and_answers_together(options, shift, rotated, answer, moved):
    q = questions_of([options], answers=[answer], contexts=["the context"])
    r = rotate_questions(q, shift)
    assert r.options == [rotated] and r.answers == [moved]
    assert r.options[0][r.answers[0]] == options[answer]
    assert (r.ids, r.prompts, r.contexts, r.letters) == (q.ids, q.prompts, q.contexts, q.letters)


def test_logits_of_a_rotation_map_back_to_the_original_letters():
    # rotated by 2, positions A..E hold c d e a b
    np.testing.assert_array_equal(unrotate_logits(np.array([[10, 20, 30, 40, 50]]), 2), [[40, 50, 10, 20, 30]])
    np.testing.assert_array_equal(unrotate_logits(np.array([[1, 2, 3]]), 2), [[2, 3, 1]])  # c a b -> a b c
    np.testing.assert_array_equal(unrotate_logits(np.array([[1, 2, 3, 4]]), 1), [[4, 1, 2, 3]])  # b c d a


def test_average_over_rotations_by_hand():
    """Content scores a..e = 1..5 and a model that adds 10 to whatever sits at A: by hand,
    N=1 [11 2 3 4 5]; N=2 (shifts 0, 2) mean of [11 2 3 4 5] and [1 2 13 4 5] = [6 2 8 4 5];
    N=5: every option sits at A once, so each gets +2: [3 4 5 6 7]."""
    q = questions_of([list("abcde")], contexts=["ctx"])
    content, bias = dict(zip("abcde", [1, 2, 3, 4, 5])), [10, 0, 0, 0, 0]
    expected = {1: [11, 2, 3, 4, 5], 2: [6, 2, 8, 4, 5], 5: [3, 4, 5, 6, 7]}
    for n, want in expected.items():
        shifts = rotation_shifts(n, 5)
        stacked = stack_rotations(q, shifts)
        assert len(stacked) == n and stacked.contexts == ["ctx"] * n and stacked.ids == ["q0"] * n
        got = average_rotations(position_biased_scores(stacked, content, bias), shifts)
        np.testing.assert_allclose(got, [want])


@pytest.mark.parametrize("letters", ["ABC", "ABCD", "ABCDE"])
def test_all_rotations_make_a_position_biased_scorer_independent_of_the_option_order(letters):
    """The falsifiable property on a stand-in model that does have a position bias: with one rotation the
    logits depend on the order of the file's options, with all of them they do not."""
    n = len(letters)
    rng = np.random.default_rng(n)
    texts = [[f"q{i}o{j}" for j in range(n)] for i in range(6)]
    content = {t: float(rng.normal()) for row in texts for t in row}
    bias = list(rng.normal(scale=3, size=n))
    q = questions_of(texts, answers=[0] * 6)
    moved = rotate_questions(q, 1)  # the same questions, options rotated by one in the file

    def tta(questions, n_rotations):
        shifts = rotation_shifts(n_rotations, n)
        return average_rotations(position_biased_scores(stack_rotations(questions, shifts), content, bias), shifts)

    np.testing.assert_allclose(unrotate_logits(tta(moved, n), 1), tta(q, n), atol=1e-5)
    assert not np.allclose(unrotate_logits(tta(moved, 1), 1), tta(q, 1), atol=1e-3)


def test_an_empty_option_is_never_ranked_above_a_real_one_after_tta():
    options = [["x", "", "y", "z"], ["", "p", "", "q"]]
    q = questions_of(options)
    content = {"": 100.0, "x": 1.0, "y": 2.0, "z": 3.0, "p": 1.0, "q": 0.0}  # the model loves blank options
    shifts = rotation_shifts(4, 4)
    averaged = average_rotations(position_biased_scores(stack_rotations(q, shifts), content, [5, 0, 0, 0]), shifts)
    np.testing.assert_allclose(averaged, [[2.25, 101.25, 3.25, 4.25], [101.25, 2.25, 101.25, 1.25]])
    ranked = top_k(rank_logits(averaged, options), 4)
    assert ranked[0].tolist() == [3, 2, 0, 1] and ranked[1].tolist()[:2] == [1, 3]
    assert make_submission(q.ids, averaged, q.letters, options)["prediction"].tolist() == ["D C A", "B D A"]


@pytest.mark.parametrize("n_rotations, n_options", [(0, 5), (6, 5), (5, 4), (4, 3), (-1, 3)])
def test_a_rotation_count_outside_1_to_the_options_is_refused(n_rotations, n_options):
    with pytest.raises(ConfigError, match=rf"--tta-rotations {n_rotations}: test.csv has {n_options} options"):
        check_rotations(n_rotations, n_options, "test.csv")
    with pytest.raises(ConfigError, match="--tta-rotations"):
        rotation_shifts(n_rotations, n_options)


@pytest.fixture
def model(tiny_deberta, tmp_path):
    return export_untrained(tiny_deberta, tmp_path / "models" / "seed0", 0, 48)


def rotate_file(path, dest, shift=1):
    """The same question file with its options rotated by `shift` and the answer letters following them."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    letters = [c for c in frame.columns if len(c) == 1]
    n = len(letters)
    frame[letters] = frame[[letters[(j + shift) % n] for j in range(n)]].to_numpy()
    frame["answer"] = [letters[(letters.index(a) - shift) % n] for a in frame["answer"]]
    frame.to_csv(dest, index=False)
    return dest


def test_one_rotation_is_todays_inference_and_all_rotations_ignore_the_option_order(model, question_files, tmp_path):
    valid = question_files["valid"]
    today = run_inference(InferConfig(models=[model], test=valid, out=tmp_path / "today" / "s.csv"))
    one = run_inference(InferConfig(models=[model], test=valid, out=tmp_path / "one" / "s.csv", tta_rotations=1))
    np.testing.assert_array_equal(
        np.load(tmp_path / "one" / "logits_seed0.npy"), np.load(tmp_path / "today" / "logits_seed0.npy")
    )
    assert one.map3 == today.map3 and one.tta_rotations == 1

    moved = rotate_file(valid, tmp_path / "moved.csv")
    a = read_questions(valid)
    b = read_questions(moved)
    assert a.answers is not None and b.answers is not None
    assert b.options[0] == a.options[0][1:] + a.options[0][:1] and [
        b.options[i][x] for i, x in enumerate(b.answers)
    ] == [a.options[i][x] for i, x in enumerate(a.answers)]
    full = run_inference(InferConfig(models=[model], test=valid, out=tmp_path / "full" / "s.csv", tta_rotations=5))
    full_moved = run_inference(
        InferConfig(models=[model], test=moved, out=tmp_path / "moved" / "s.csv", tta_rotations=5)
    )
    logits = np.load(tmp_path / "full" / "logits_seed0.npy")
    np.testing.assert_allclose(unrotate_logits(np.load(tmp_path / "moved" / "logits_seed0.npy"), 1), logits, atol=1e-5)
    assert full.map3 == pytest.approx(full_moved.map3) and full.tta_rotations == 5
    np.testing.assert_allclose(np.load(tmp_path / "full" / "logits_ensemble.npy"), logits, rtol=1e-6)
    # a multiple-choice head scores each (question, option) pair on its own, so these models have no position
    # bias for the rotations to remove: all five give today's logits, at five times the cost
    np.testing.assert_allclose(logits, np.load(tmp_path / "today" / "logits_seed0.npy"), atol=1e-5)


def test_cli_rotates_a_three_option_file_and_says_so(model, tmp_path, capsys):
    test = write_questions(tmp_path / "three.csv", 6, seed=5, letters="ABC", context=True)
    out = tmp_path / "o" / "submission.csv"
    assert (
        infer_cli.main(["--models", str(model), "--test", str(test), "--out", str(out), "--tta-rotations", "3"]) == 0
    )
    assert "3 option rotations" in capsys.readouterr().out
    assert np.load(out.parent / "logits_seed0.npy").shape == (6, 3)
    assert all(sorted(p.split()) == ["A", "B", "C"] for p in pd.read_csv(out, dtype=str)["prediction"])


def test_too_many_rotations_fail_before_any_model_loads(model, tmp_path, capsys, monkeypatch):
    import mcq.core.predict

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before --tta-rotations was checked")

    monkeypatch.setattr(mcq.core.predict, "load_model", no_load)
    test = write_questions(tmp_path / "four.csv", 4, seed=6, letters="ABCD", answers=False)
    out = tmp_path / "o" / "submission.csv"
    argv = ["--models", str(model), "--test", str(test), "--out", str(out), "--tta-rotations", "5"]
    assert main_guard(lambda: infer_cli.main(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --tta-rotations 5: {test} has 4 options") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        infer_cli.main([*argv[:-1], "0"])
    assert "must be a positive integer" in capsys.readouterr().err
    assert not out.parent.exists()
