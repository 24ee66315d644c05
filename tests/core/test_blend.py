"""Blend weights tuned on validation: the fit, its cross-validation, the decision rule, infer.py and the CLI."""

import json
import re

import numpy as np
import pytest
from conftest import write_questions

import mcq.core.blend as blend
from mcq.cli import main_guard
from mcq.core.blend import (
    MemberBlend,
    blend_loss,
    blend_members,
    blend_report,
    choose_blend,
    cross_validated_gain,
    fit_weights,
    fold_indices,
    zscore,
)
from mcq.core.data import read_questions
from mcq.core.metrics import map3_score, mean_logits
from mcq.core.model import export_untrained
from mcq.errors import ConfigError
from mcq.infer import cli as infer_cli
from mcq.infer.config import InferConfig
from mcq.infer.run import run_inference


def synthetic(n=200, n_options=5, signal=1.0, seed=0):
    """(answers, informative logits, pure-noise logits)."""
    rng = np.random.default_rng(seed)
    answers = rng.integers(0, n_options, n)
    informative = signal * np.eye(n_options)[answers] + rng.normal(size=(n, n_options))
    return answers, informative, rng.normal(size=(n, n_options))


def test_the_loss_is_the_cross_entropy_and_its_gradient_is_exact():
    # one question, two models; raw weights (1, 2): z = [1, 0] + 2 * [0, 1] = [1, 2], answer 0
    stack = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    raw = np.array([1.0, 2.0])
    loss, grad = blend_loss(raw, stack, np.array([0]), np.zeros((1, 2), dtype=bool))
    assert loss == pytest.approx(np.log(np.exp(1) + np.exp(2)) - 1 + blend.L2 * 5)
    stack = np.random.default_rng(1).normal(size=(3, 7, 4))
    answers, empty = np.array([0, 1, 2, 3, 0, 1, 2]), np.zeros((7, 4), dtype=bool)
    empty[0, 3] = True
    raw = np.array([0.3, 1.2, 0.7])
    _, grad = blend_loss(raw, np.where(empty, 0.0, stack), answers, empty)
    numeric = [
        (blend_loss(raw + d, stack, answers, empty)[0] - blend_loss(raw - d, stack, answers, empty)[0]) / 2e-6
        for d in np.eye(3) * 1e-6
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5)


def test_an_informative_model_takes_the_weight_from_pure_noise():
    answers, informative, noise = synthetic()
    weights = fit_weights([informative, noise], answers)
    assert weights[0] > 0.9 and weights.min() >= 0 and weights.sum() == pytest.approx(1)
    cv = cross_validated_gain([informative, noise], answers, folds=5)
    assert len(cv["folds"]) == 5 and sum(f["n"] for f in cv["folds"]) == 200
    assert cv["gain"] >= 0 and cv["map3_tuned"] >= cv["map3_equal"]
    assert cv["gain"] == pytest.approx(cv["map3_tuned"] - cv["map3_equal"])
    report = blend_report([informative, noise], answers, None, ["a", "b"])
    assert report.use_tuned and report.weights == report.fitted and report.reason.startswith("tuned weights used")


def test_two_identical_models_get_equal_weights_and_no_gain():
    answers, informative, _ = synthetic()
    weights = fit_weights([informative, informative], answers)
    np.testing.assert_allclose(weights, [0.5, 0.5], atol=1e-6)
    report = blend_report([informative, informative], answers, None, ["a", "b"])
    assert report.gain == pytest.approx(0, abs=1e-12) and not report.use_tuned
    assert report.weights == [0.5, 0.5] and report.reason.startswith("equal weights kept")


def test_weights_are_non_negative_and_sum_to_one():
    answers, informative, noise = synthetic(seed=3)
    weights = fit_weights([informative, noise, -informative], answers)  # the third is anti-informative
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1) and weights[2] < 1e-6
    assert fit_weights([noise], answers).tolist() == [1.0]


def test_empty_options_are_masked_in_the_fit():
    """Model B is model A plus +100 on an empty (wrong) option: masked, the two are the same model."""
    answers, informative, _ = synthetic(seed=4)
    n = len(answers)
    blank = (answers + 1) % 5
    options = [["x"] * 5 for _ in range(n)]
    for i in range(n):
        options[i][blank[i]] = ""
    loud = informative.copy()
    loud[np.arange(n), blank] += 100
    np.testing.assert_allclose(fit_weights([informative, loud], answers, options), [0.5, 0.5], atol=1e-6)
    assert fit_weights([informative, loud], answers)[1] < 1e-6  # unmasked, B's blank option would sink it
    options[0][answers[0]] = ""
    with pytest.raises(ValueError, match="empty option"):
        fit_weights([informative, loud], answers, options)


def test_no_cross_validated_gain_keeps_equal_weights(monkeypatch):
    answers, informative, noise = synthetic()
    fake = {"folds": [], "map3_tuned": 0.5, "map3_equal": 0.51, "gain": -0.01, "low": -0.03, "high": 0.01}
    monkeypatch.setattr(blend, "cross_validated_gain", lambda *a, **k: fake)
    report = blend_report([informative, noise], answers, None, ["a", "b"])
    assert report.fitted[0] > 0.9 and not report.use_tuned and report.weights == [0.5, 0.5]
    assert "equal weights kept" in report.reason and "-0.0100" in report.reason
    fake.update(gain=0.0, low=-0.02, high=0.02)
    assert not blend_report([informative, noise], answers, None, ["a", "b"]).use_tuned


def test_a_gain_within_the_question_noise_still_uses_tuned_weights_and_says_so(monkeypatch):
    answers, informative, noise = synthetic()
    fake = {"folds": [], "map3_tuned": 0.52, "map3_equal": 0.51, "gain": 0.01, "low": -0.004, "high": 0.024}
    monkeypatch.setattr(blend, "cross_validated_gain", lambda *a, **k: fake)
    report = blend_report([informative, noise], answers, None, ["a", "b"])
    assert (
        report.use_tuned and report.weights == report.fitted and (report.gain_low, report.gain_high) == (-0.004, 0.024)
    )
    assert report.reason.endswith("over equal weights, within the noise of 200 questions")
    assert "+0.0100 [95 % interval -0.0040, +0.0240]" in report.reason
    fake.update(low=0.001)
    assert "beyond the noise of 200 questions" in blend_report([informative, noise], answers, None, ["a", "b"]).reason


def test_pure_noise_models_often_gain_by_luck_and_the_interval_shows_it():
    """40 questions, two models of pure noise, 30 draws: the gain is often > 0, never beyond the question noise."""
    lucky = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        answers = rng.integers(0, 5, 40)
        report = blend_report([rng.normal(size=(40, 5)), rng.normal(size=(40, 5))], answers.tolist(), None, ["a", "b"])
        lucky += report.gain > 0
        assert report.use_tuned == (report.gain > 0)
        assert report.gain_low <= report.gain <= report.gain_high and report.gain_low <= 0
    assert lucky >= 5


def test_folds_cover_every_question_once():
    parts = fold_indices(12, 5, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(12)) and [len(p) for p in parts] == [3, 3, 2, 2, 2]
    assert all((a == b).all() for a, b in zip(parts, fold_indices(12, 5, seed=0)))
    for folds in (1, 13):
        with pytest.raises(ConfigError, match=f"--folds {folds}"):
            fold_indices(12, folds)


@pytest.fixture
def models(tiny_deberta, tmp_path):
    return [export_untrained(tiny_deberta, tmp_path / "models" / f"seed{s}", s, 48) for s in range(2)]


def test_inference_tunes_weights_on_valid_and_writes_blend_json(models, question_files, tmp_path, capsys):
    out = tmp_path / "out" / "submission.csv"
    argv = [
        "--models",
        *map(str, models),
        "--test",
        str(question_files["test"]),
        "--out",
        str(out),
        "--tune-weights",
        str(question_files["valid"]),
        "--tta-rotations",
        "2",
    ]
    assert infer_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "cross-validated MAP@3: tuned" in printed and f"blend report: {out.parent / 'blend.json'}" in printed
    report = json.loads((out.parent / "blend.json").read_text())
    assert report["models"] == ["seed0", "seed1"] and report["valid"] == str(question_files["valid"])
    assert len(report["folds"]) == 5 and sum(f["n"] for f in report["folds"]) == 12
    assert min(report["fitted"]) >= 0 and sum(report["fitted"]) == pytest.approx(1)
    assert report["gain_low"] <= report["gain"] <= report["gain_high"]
    assert report["use_tuned"] == (report["gain"] > 0)
    assert report["weights"] == (report["fitted"] if report["use_tuned"] else [0.5, 0.5])
    per_model = [np.load(out.parent / f"logits_seed{s}.npy") for s in range(2)]
    np.testing.assert_allclose(
        np.load(out.parent / "logits_ensemble.npy"), mean_logits(per_model, report["weights"]), rtol=1e-6
    )
    # the validation logits were made as the test's (two rotations) and are what the fit saw
    run_inference(
        InferConfig(models=models, test=question_files["valid"], out=tmp_path / "v" / "s.csv", tta_rotations=2)
    )
    for s in range(2):
        np.testing.assert_allclose(
            np.load(out.parent / f"valid_logits_seed{s}.npy"),
            np.load(tmp_path / "v" / f"logits_seed{s}.npy"),
            atol=1e-6,
        )
    valid = read_questions(question_files["valid"])
    assert valid.answers is not None
    again = blend_report(
        [np.load(out.parent / f"valid_logits_seed{s}.npy") for s in range(2)],
        valid.answers,
        valid.options,
        ["seed0", "seed1"],
    )
    assert again.gain == pytest.approx(report["gain"]) and again.fitted == pytest.approx(report["fitted"], abs=1e-6)


def test_tuning_is_refused_with_weights_one_model_or_no_answers(models, question_files, tmp_path, capsys, monkeypatch):
    import mcq.core.predict

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before --tune-weights was checked")

    monkeypatch.setattr(mcq.core.predict, "load_model", no_load)
    valid, test, out = question_files["valid"], question_files["test"], tmp_path / "o" / "s.csv"
    argv = ["--models", *map(str, models), "--test", str(test), "--out", str(out), "--tune-weights", str(valid)]
    assert main_guard(lambda: infer_cli.main([*argv, "--weights", "1", "2"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --weights and --tune-weights: give one of them") and err.count("\n") == 1
    with pytest.raises(ConfigError, match="--weights and --tune-weights"):
        run_inference(InferConfig(models=models, test=test, out=out, weights=[1, 2], tune_weights=valid))
    with pytest.raises(ConfigError, match="one model found"):
        run_inference(InferConfig(models=models[:1], test=test, out=out, tune_weights=valid))
    with pytest.raises(ConfigError, match=re.escape(f"--tune-weights {test}: no 'answer' column")):
        run_inference(InferConfig(models=models, test=valid, out=out, tune_weights=test))
    small = write_questions(tmp_path / "small.csv", 3, seed=7)
    with pytest.raises(ConfigError, match="too few for 5-fold"):
        run_inference(InferConfig(models=models, test=test, out=out, tune_weights=small))
    assert not out.parent.exists()


# --- z-scored members: zscore, MemberBlend, blend_members, choose_blend ----------------------------------

ROOT_3_2 = np.sqrt(1.5)  # [1, 2, 3]: mean 2, population variance (1 + 0 + 1) / 3 = 2/3, so z = +-1 / sqrt(2/3)


def test_zscore_standardises_each_row_with_the_population_std():
    z = zscore(np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [3.0, 0.0, 0.0]]))
    np.testing.assert_allclose(z[0], [-ROOT_3_2, 0.0, ROOT_3_2])  # [-1.2247, 0, 1.2247]
    np.testing.assert_allclose(z[1], z[0])  # each row on its own: the scale goes
    # [3, 0, 0]: mean 1, deviations [2, -1, -1], variance 6/3 = 2: z = [2, -1, -1] / sqrt(2)
    np.testing.assert_allclose(z[2], np.array([2.0, -1.0, -1.0]) / np.sqrt(2))
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=1), 1)


def test_zscore_leaves_empty_options_out_of_the_mean_and_std_and_sets_them_to_zero():
    scores = np.array([[1.0, 100.0, 2.0, 3.0], [4.0, 5.0, -50.0, 6.0]])
    options = [["a", "", "b", "c"], ["a", "b", "", "c"]]
    z = zscore(scores, options)
    # the non-empty options are [1, 2, 3] and [4, 5, 6]: z = [-1.2247, 0, 1.2247] each, the empty one 0
    np.testing.assert_allclose(z, [[-ROOT_3_2, 0.0, 0.0, ROOT_3_2], [-ROOT_3_2, 0.0, 0.0, ROOT_3_2]], atol=1e-12)


def test_zscore_of_a_constant_row_is_zero():
    z = zscore(np.array([[5.0, 5.0, 5.0], [1.0, 2.0, 3.0]]))
    assert z[0].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(z[1], [-ROOT_3_2, 0.0, ROOT_3_2])
    # one non-empty option (constant over what is left), and a row of empty options only: zeros, no NaN
    z = zscore(np.array([[7.0, 9.0], [1.0, 2.0]]), [["x", ""], ["", ""]])
    assert z.tolist() == [[0.0, 0.0], [0.0, 0.0]]


def member_blend(**changes) -> MemberBlend:
    fields = dict(
        members=["models", "lexical"],
        weights=[0.75, 0.25],
        choice="tuned",
        map3={"models alone": 0.6, "lexical alone": 0.4, "equal": 0.62, "tuned": 0.65},
        gain=0.05,
        gain_low=0.01,
        gain_high=0.09,
        reason="tuned weights on 300 validation questions",
        n_questions=300,
        valid="valid.csv",
        embedder="",
    )
    return MemberBlend(**{**fields, **changes})


def test_member_blend_round_trips_through_its_meta_record_as_json():
    original = member_blend()
    raw = json.loads(json.dumps(original.to_meta()))
    assert raw["members"] == ["models", "lexical"] and raw["weights"] == [0.75, 0.25]
    assert MemberBlend.from_meta(raw, "models/meta.json") == original
    assert original.summary() == "blend (tuned): models 0.750, lexical 0.250"


def test_member_blend_from_meta_with_a_wrong_key_raises_config_error_naming_the_file():
    raw = member_blend().to_meta()
    with pytest.raises(ConfigError, match=re.escape("models/meta.json: its blend record does not read")):
        MemberBlend.from_meta({**raw, "weighting": "tuned"}, "models/meta.json")  # an unknown key
    del raw["choice"]
    with pytest.raises(ConfigError, match="--blend off"):
        MemberBlend.from_meta(raw, "models/meta.json")  # a missing key


def test_member_blend_from_meta_rejects_members_and_weights_of_different_lengths():
    raw = member_blend(weights=[1.0]).to_meta()
    with pytest.raises(ConfigError, match="2 members and 1 weights"):
        MemberBlend.from_meta(raw, "m")
    with pytest.raises(ConfigError, match="0 members and 0 weights"):
        MemberBlend.from_meta(member_blend(members=[], weights=[]).to_meta(), "m")


def test_blend_members_is_the_weighted_sum_of_z_scores_in_member_order():
    members = {"a": np.array([[1.0, 2.0, 3.0]]), "b": np.array([[3.0, 0.0, 0.0]])}
    za, zb = np.array([-ROOT_3_2, 0.0, ROOT_3_2]), np.array([2.0, -1.0, -1.0]) / np.sqrt(2)
    # weights 3 and 1 normalise to 3/4 and 1/4
    np.testing.assert_allclose(blend_members(members, [3.0, 1.0])[0], 0.75 * za + 0.25 * zb)
    np.testing.assert_allclose(blend_members(members, [0.0, 1.0])[0], zb)
    # an empty option is 0 in every member's z-score, so 0 in the blend; the others are z-scored without it
    options = [["x", "y", ""]]
    # a: [1, 2] -> [-1, 1]; b: [3, 0] -> [1, -1]
    np.testing.assert_allclose(blend_members(members, [0.5, 0.5], options)[0], [0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(blend_members(members, [1.0, 0.0], options)[0], [-1.0, 1.0, 0.0])


def members_of(n=300, n_options=5, seed=0):
    """(rng, answers, one-hot of the answers) for synthetic members."""
    rng = np.random.default_rng(seed)
    answers = rng.integers(0, n_options, n)
    return rng, answers, np.eye(n_options)[answers]


def chosen_map3(result: MemberBlend) -> float:
    """The cross-validated MAP@3 reported for the choice (alone is reported under '<first> alone')."""
    return result.map3[f"{result.members[0]} alone" if result.choice == "alone" else result.choice]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_choose_blend_keeps_the_weight_on_an_informative_first_member_over_pure_noise(seed):
    rng, answers, onehot = members_of(seed=seed)
    members = {
        "models": onehot + rng.normal(size=onehot.shape),
        "noise": 50 * rng.normal(size=onehot.shape),  # a large scale: z-scoring must tame it
        "offset noise": rng.normal(size=onehot.shape) + 3,
    }
    result = choose_blend(members, answers, None)
    assert result.weights[0] == max(result.weights) and result.weights[0] > 0.5
    alone = map3_score(members["models"], answers)
    assert result.map3["models alone"] == pytest.approx(alone)
    assert chosen_map3(result) >= alone - 0.03
    assert result.choice != "equal"  # equal thirds with two noise members score far below the first alone


@pytest.mark.parametrize("seed", [0, 1])
def test_choose_blend_combines_members_right_on_different_questions(seed):
    """A knows the answer on even questions, B on odd ones (on another scale); each is noise elsewhere."""
    rng, answers, onehot = members_of(seed=seed)
    even = (np.arange(len(answers)) % 2 == 0)[:, None]
    members = {
        "a": rng.normal(size=onehot.shape) + 3 * onehot * even,
        "b": 10 * (rng.normal(size=onehot.shape) + 3 * onehot * ~even),
    }
    alone = [map3_score(x, answers) for x in members.values()]
    result = choose_blend(members, answers, None)
    assert result.choice in ("equal", "tuned")
    assert min(result.weights) > 0.3  # both count
    assert chosen_map3(result) > max(alone) + 0.05
    assert map3_score(blend_members(members, result.weights), answers) > max(alone) + 0.05
    assert result.gain > 0 and result.gain_low > 0  # over A alone, beyond the noise of 300 questions


def test_choose_blend_reports_members_in_order_weights_summing_to_one_and_why():
    rng, answers, onehot = members_of(seed=5)
    n = len(answers)
    blank = (answers + 2) % 5  # one empty option per question, never the answer
    options = [["opt"] * 5 for _ in range(n)]
    for i in range(n):
        options[i][blank[i]] = ""
    members = {"zeta": 1.5 * onehot + rng.normal(size=onehot.shape), "alpha": onehot + rng.normal(size=onehot.shape)}
    result = choose_blend(members, answers, options, valid="valid.csv", embedder="bge-small")
    assert result.members == ["zeta", "alpha"]  # as given, not sorted
    assert len(result.weights) == 2 and sum(result.weights) == pytest.approx(1) and min(result.weights) >= 0
    assert result.choice in ("alone", "equal", "tuned") and result.n_questions == n
    assert (result.valid, result.embedder) == ("valid.csv", "bge-small")
    assert set(result.map3) == {"zeta alone", "alpha alone", "equal", "tuned"}
    assert result.map3["alpha alone"] == pytest.approx(map3_score(members["alpha"], answers, options))
    assert result.reason.startswith(f"{result.choice} weights on {n} validation questions: MAP@3 zeta alone ")
    assert "gain over zeta alone" in result.reason
    assert result.gain_low <= result.gain <= result.gain_high
    assert MemberBlend.from_meta(json.loads(json.dumps(result.to_meta())), "meta") == result


def test_choose_blend_of_two_identical_members_keeps_the_first_alone_with_no_gain():
    """Any weights rank as the first member does: neither equal nor tuned beats it, so it stays alone."""
    rng, answers, onehot = members_of(seed=6)
    x = onehot + rng.normal(size=onehot.shape)
    result = choose_blend({"a": x, "b": x.copy()}, answers, None)
    assert result.choice == "alone" and result.weights == [1.0, 0.0]
    assert result.map3["equal"] == pytest.approx(result.map3["a alone"]) == pytest.approx(map3_score(x, answers))
    assert (result.gain, result.gain_low, result.gain_high) == (0.0, 0.0, 0.0)
    assert result.reason.startswith("alone weights on 300 validation questions")
