"""Scoring maths (top-k, MAP@k, ensembling) and the submission file, checked against hand-worked numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcq.core.metrics import chance_map3, map3_score, map_at_k, mean_logits, rank_logits, top_k, top_k_letters
from mcq.errors import SubmissionError
from mcq.infer.submission import make_submission, validate_submission, write_submission
from mcq.io import write_array

FIVE = tuple("ABCDE")

# --- top-k ------------------------------------------------------------------------------------------


def test_top_k_orders_best_first():
    logits = np.array([[0.1, 0.5, 0.3, 0.9, 0.2], [-1.0, -3.0, -0.5, -2.0, -4.0]])
    assert top_k(logits, 3).tolist() == [[3, 1, 2], [2, 0, 3]]
    assert top_k_letters(logits, FIVE, 3) == ["D B C", "C A D"]


def test_top_k_ties_go_to_the_earlier_letter():
    assert top_k(np.array([[1, 1, 1, 1, 1]]), 3).tolist() == [[0, 1, 2]]
    assert top_k(np.array([[0, 2, 2, 1, 2]]), 3).tolist() == [[1, 2, 4]]
    assert top_k_letters(np.array([[5, 0, 5, 5, 0]]), FIVE) == ["A C D"]
    assert top_k_letters(np.array([[0, 7, 0, 0, 0]]), FIVE) == ["B A C"]


def test_top_3_of_4_options():
    assert top_k_letters(np.array([[0.3, 0.1, 0.4, 0.2]]), "ABCD", 3) == ["C A D"]
    assert top_k(np.array([[0.3, 0.1, 0.4, 0.2]]), 3).shape == (1, 3)


def test_top_k_other_k():
    assert top_k_letters(np.array([[0.3, 0.1, 0.4, 0.2, 0.0]]), FIVE, 1) == ["C"]
    assert top_k_letters(np.array([[0.3, 0.1, 0.4, 0.2, 0.0]]), FIVE, 5) == ["C A D B E"]


# --- MAP@k ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ranked,expected", [([[0, 1, 2]], 1.0), ([[1, 0, 2]], 0.5), ([[1, 2, 0]], 1 / 3), ([[1, 2, 3]], 0.0)]
)
def test_map_at_3_single_question(ranked, expected):
    assert map_at_k(np.array(ranked), [0]) == pytest.approx(expected)


def test_map_at_3_is_the_mean_over_questions():
    ranked = np.array([[0, 1, 2], [1, 0, 2], [1, 2, 0], [1, 2, 3]])
    # (1 + 1/2 + 1/3 + 0) / 4 = 11/24
    assert map_at_k(ranked, [0, 0, 0, 0]) == pytest.approx(11 / 24)


def test_map_at_k_only_looks_at_the_first_k():
    ranked = np.array([[4, 3, 2, 1, 0]])
    assert map_at_k(ranked, [1], k=3) == 0.0
    assert map_at_k(ranked, [1], k=4) == pytest.approx(0.25)


def test_map_repeated_prediction_after_the_answer_does_not_count():
    assert map_at_k(np.array([[2, 2, 2]]), [2]) == 1.0
    assert map_at_k(np.array([[1, 1, 2]]), [2]) == pytest.approx(1 / 3)


def test_map_rejects_mismatched_lengths_and_no_questions():
    with pytest.raises(ValueError):
        map_at_k(np.array([[0, 1, 2], [1, 2, 0]]), [0])
    with pytest.raises(ValueError):
        map_at_k(np.array([[0, 1, 2]]), [0, 1])
    with pytest.raises(ValueError):
        map_at_k(np.zeros((0, 3), dtype=int), [])


def test_map3_score():
    logits = np.array(
        [
            [0.9, 0.1, 0.5, 0.0, 0.2],  # ranking A C E: answer C at rank 2
            [0.0, 0.0, 0.0, 0.0, 1.0],  # ranking E A B: answer D absent
        ]
    )
    assert map3_score(logits, [2, 3]) == pytest.approx(0.25)
    # with A empty in the first question, the ranking is C E B: answer C now at rank 1
    options = [["", "b", "c", "d", "e"], ["a", "b", "c", "d", "e"]]
    assert map3_score(logits, [2, 3], options) == pytest.approx(0.5)


def test_chance_map3_by_hand():
    assert chance_map3(5) == pytest.approx((1 + 1 / 2 + 1 / 3) / 5)
    assert chance_map3(4) == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert chance_map3(2) == pytest.approx((1 + 1 / 2) / 2)


def test_random_ranking_scores_chance_level():
    rng = np.random.default_rng(0)
    n = 50_000
    logits = rng.normal(size=(n, 5))
    answers = rng.integers(0, 5, size=n)
    # (1 + 1/2 + 1/3) / 5 = 0.3667
    assert map3_score(logits, answers.tolist()) == pytest.approx(chance_map3(5), abs=0.01)


# --- ensembling -------------------------------------------------------------------------------------

A = np.array([[1.0, 2.0], [3.0, 4.0]])
B = np.array([[3.0, 0.0], [1.0, 8.0]])


def test_mean_logits_equal_weights_is_the_arithmetic_mean():
    assert mean_logits([A, B]).tolist() == [[2.0, 1.0], [2.0, 6.0]]
    assert mean_logits([A]).tolist() == A.tolist()
    assert mean_logits([A, B], [1, 1]).tolist() == [[2.0, 1.0], [2.0, 6.0]]


def test_mean_logits_weights_are_normalised():
    # 0.25 * A + 0.75 * B
    expected = [[2.5, 0.5], [1.5, 7.0]]
    assert mean_logits([A, B], [1, 3]) == pytest.approx(np.array(expected))
    assert mean_logits([A, B], [2, 6]) == pytest.approx(np.array(expected))
    assert mean_logits([A, B], [0, 5]) == pytest.approx(B)


@pytest.mark.parametrize("weights", [[-1, 2], [1], [1, 2, 3], [0, 0]])
def test_mean_logits_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        mean_logits([A, B], weights)


def test_mean_logits_rejects_nothing_and_mismatched_shapes():
    with pytest.raises(ValueError):
        mean_logits([])
    with pytest.raises(ValueError):
        mean_logits([A, np.zeros((3, 2))])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("weights", [[float("nan"), 1.0], [float("inf"), 1.0]])
def test_mean_logits_rejects_non_finite_weights(weights):
    with pytest.raises(ValueError):
        mean_logits([A, B], weights)


# --- ranking and the submission frame ---------------------------------------------------------------------


def test_empty_option_ranks_behind_every_real_one():
    logits = np.array([[0.0, 9.0, 1.0, 2.0, 3.0]])
    options = [["a", "", "c", "d", "e"]]
    ranked = rank_logits(logits, options)
    assert ranked[0, 1] == -np.inf and ranked[0, [0, 2, 3, 4]].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert logits[0, 1] == 9.0, "the caller's logits must not change"
    assert make_submission(["x"], logits, FIVE, options)["prediction"].tolist() == ["E D C"]


def test_empty_options_fill_the_top_3_only_when_real_ones_run_out():
    logits = np.array([[0.0, 5.0, 6.0, 7.0, -1.0]])
    options = [["a", "", "", "", "e"]]
    # real options A (0.0) then E (-1.0); the empty ones tie at -inf, so the earliest, B, comes third
    assert make_submission(["x"], logits, FIVE, options)["prediction"].tolist() == ["A E B"]


def test_make_submission_keeps_the_test_row_order():
    ids = ["z9", "a1", "m5"]
    logits = np.array([[0.0, 0.0, 0.0, 1.0, 2.0], [3.0, 2.0, 1.0, 0.0, -1.0], [0.0, 4.0, 0.0, 0.0, 3.0]])
    options = [["t"] * 5] * 3
    frame = make_submission(ids, logits, FIVE, options)
    assert list(frame.columns) == ["id", "prediction"]
    assert frame["id"].tolist() == ids
    assert frame["prediction"].tolist() == ["E D A", "A B C", "B E A"]
    validate_submission(frame, ids, FIVE)


def test_make_submission_four_options():
    frame = make_submission(["q"], np.array([[0.3, 0.1, 0.4, 0.2]]), "ABCD", [["w", "x", "y", "z"]])
    assert frame["prediction"].tolist() == ["C A D"]


def test_two_options_give_both_letters_and_validate():
    frame = make_submission(["q0", "q1"], np.array([[0.1, 0.9], [0.7, 0.2]]), "AB", [["x", "y"], ["x", "y"]])
    assert frame["prediction"].tolist() == ["B A", "A B"]
    validate_submission(frame, ["q0", "q1"], "AB")
    with pytest.raises(SubmissionError, match="'B' is not 2 distinct letters from AB"):
        validate_submission(pd.DataFrame({"id": ["q0"], "prediction": ["B"]}), ["q0"], "AB")


# --- validation ----------------------------------------------------------------------------------------

IDS = ["q0", "q1", "q2"]


def good_frame() -> pd.DataFrame:
    return pd.DataFrame({"id": IDS, "prediction": ["A B C", "E D C", "B A E"]})


def test_a_good_submission_passes():
    validate_submission(good_frame(), IDS, FIVE)


def test_integer_ids_match_their_string_form():
    frame = pd.DataFrame({"id": [0, 1], "prediction": ["A B C", "C B A"]})
    validate_submission(frame, ["0", "1"], FIVE)


def with_prediction(row: int, prediction: str) -> pd.DataFrame:
    frame = good_frame()
    frame.loc[row, "prediction"] = prediction
    return frame


@pytest.mark.parametrize(
    "frame,letters,needles",
    [
        (with_prediction(1, "A A B"), FIVE, ["line 3", "'q1'", "'A A B'"]),
        (with_prediction(1, "A B"), FIVE, ["line 3", "'q1'", "'A B'"]),
        (with_prediction(0, "A B C D"), FIVE, ["line 2", "'q0'"]),
        (with_prediction(2, "A B F"), FIVE, ["line 4", "'q2'", "'A B F'", "ABCDE"]),
        (
            pd.DataFrame({"id": IDS, "prediction": ["A B C", "D C B", "A B E"]}),
            tuple("ABCD"),
            ["line 4", "'q2'", "'A B E'", "ABCD"],
        ),
        (with_prediction(0, "a b c"), FIVE, ["line 2", "'q0'"]),
        (with_prediction(0, "A,B,C"), FIVE, ["line 2", "'q0'"]),
    ],
    ids=["repeated letter", "two letters", "four letters", "F of 5 options", "E of 4 options", "lower case", "commas"],
)
def test_bad_predictions_name_the_line_and_id(frame, letters, needles):
    with pytest.raises(SubmissionError) as err:
        validate_submission(frame, IDS, letters)
    for needle in needles:
        assert needle in str(err.value), f"{needle!r} not in {str(err.value)!r}"


def test_nan_prediction_is_rejected():
    frame = good_frame()
    frame["prediction"] = frame["prediction"].astype(object)
    frame.loc[1, "prediction"] = None
    with pytest.raises(SubmissionError, match="line 3, id 'q1'"):
        validate_submission(frame, IDS, FIVE)


def test_id_order_differs():
    frame = good_frame().iloc[[1, 0, 2]].reset_index(drop=True)
    with pytest.raises(SubmissionError) as err:
        validate_submission(frame, IDS, FIVE)
    msg = str(err.value)
    assert "line 2" in msg and "'q1'" in msg and "'q0'" in msg


def test_unknown_id():
    frame = good_frame()
    frame.loc[2, "id"] = "q7"
    with pytest.raises(SubmissionError, match="line 4: id 'q7'"):
        validate_submission(frame, IDS, FIVE)


@pytest.mark.parametrize("columns", [["id", "answer"], ["prediction", "id"], ["Id", "prediction"]])
def test_wrong_columns(columns):
    frame = good_frame()
    frame.columns = columns
    with pytest.raises(SubmissionError, match=r"expected \['id', 'prediction'\]"):
        validate_submission(frame, IDS, FIVE)


def test_extra_column():
    frame = good_frame().assign(score=1.0)
    with pytest.raises(SubmissionError, match="columns"):
        validate_submission(frame, IDS, FIVE)


def test_missing_id_and_extra_row_are_rejected():
    with pytest.raises(SubmissionError, match="2 rows for 3 test questions"):
        validate_submission(good_frame().iloc[[0, 2]], IDS, FIVE)
    extra = pd.concat([good_frame(), pd.DataFrame({"id": ["q3"], "prediction": ["A B C"]})], ignore_index=True)
    with pytest.raises(SubmissionError, match="4 rows for 3 test questions"):
        validate_submission(extra, IDS, FIVE)


@pytest.mark.parametrize("case", ["missing", "extra"])
def test_missing_id_and_extra_row_name_the_line_and_id(case):
    if case == "missing":
        frame, needles = good_frame().iloc[[0, 2]].reset_index(drop=True), ["line 3", "'q1'"]
    else:
        frame = pd.concat([good_frame(), pd.DataFrame({"id": ["q3"], "prediction": ["A B C"]})], ignore_index=True)
        needles = ["line 5", "'q3'"]
    with pytest.raises(SubmissionError) as err:
        validate_submission(frame, IDS, FIVE)
    assert all(n in str(err.value) for n in needles), str(err.value)


# --- writing ----------------------------------------------------------------------------------------------


def test_failed_validation_creates_no_file(tmp_path):
    path = tmp_path / "out" / "submission.csv"
    with pytest.raises(SubmissionError):
        write_submission(with_prediction(0, "A A A"), path, IDS, FIVE)
    assert not path.exists()
    assert list(tmp_path.rglob("*")) in ([], [tmp_path / "out"])


def test_failed_validation_leaves_an_existing_file_unchanged(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_bytes(b"id,prediction\nold,A B C\n")
    with pytest.raises(SubmissionError):
        write_submission(with_prediction(2, "A B F"), path, IDS, FIVE)
    assert path.read_bytes() == b"id,prediction\nold,A B C\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]


def test_written_submission_reads_back(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("stale\n")
    assert write_submission(good_frame(), path, IDS, FIVE) == path
    lines = path.read_text().splitlines()
    assert lines == ["id,prediction", "q0,A B C", "q1,E D C", "q2,B A E"]
    back = pd.read_csv(path, dtype=str)
    validate_submission(back, IDS, FIVE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"], "no temporary file left behind"


@pytest.mark.parametrize("name", ["logits.npy", "logits", "valid.logits.bin"])
def test_write_array_at_exactly_the_path(tmp_path, name):
    array = np.arange(15, dtype=np.float32).reshape(3, 5) / 7
    path = tmp_path / name
    assert write_array(path, array) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    back = np.load(path)
    assert back.dtype == np.float32 and np.array_equal(back, array)


def test_write_array_replaces_an_existing_file(tmp_path):
    path = tmp_path / "logits.npy"
    write_array(path, np.zeros((2, 5)))
    write_array(path, np.ones((4, 5)))
    assert np.array_equal(np.load(path), np.ones((4, 5)))


def test_atomic_writes_get_the_usual_file_mode_and_leave_nothing_on_failure(tmp_path):
    """mkstemp creates 0600 files: a submission in /kaggle/working must not end up unreadable to others."""
    import os

    from mcq.io import atomic_write, atomic_write_text

    mask = os.umask(0o022)
    os.umask(mask)
    path = atomic_write_text(tmp_path / "a.txt", "x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "b.txt", lambda tmp: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
