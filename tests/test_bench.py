"""Smoke tests of the benchmark helpers on tiny models (the benchmarks themselves live in bench/)."""

import argparse

import numpy as np
import pytest
import torch
from transformers import AutoModelForMultipleChoice, AutoTokenizer

import bench as bench_pkg
from bench import attention_parity, gpu_check, infer_speed, suite_time, train_speed
from bench.common import export_backbone, token_counts
from bench.retrieve_scale import STEM1K
from mcq.core.arch import tiny_deberta_config
from mcq.core.data import read_questions
from mcq.core.features import encode
from mcq.train.config import TrainConfig


def test_gpu_check_cpu_smoke_prints_its_table(capsys):
    assert gpu_check.main(["--cpu-smoke"]) == 0
    out = capsys.readouterr().out
    assert "train step, gradient checkpointing, eager" in out and "inference, 20 questions, eager" in out
    assert "train step, gradient checkpointing, disentangled-flash" in out  # installed with requirements.txt
    assert "failed" not in out  # a failing variant is printed as a row, not raised
    assert "parity eager vs disentangled-flash" in out
    assert "dense embedding fp16 on cpu, 100 texts" in out and "top-5 neighbours that fp32 also has | 1.000" in out


def test_attention_parity_finds_the_switch_exact_on_cpu(capsys):
    pytest.importorskip("disentangled_flash")
    config = tiny_deberta_config()
    [result] = attention_parity.compare(config, torch.device("cpu"), [40])
    assert result["backend"] == "torch" and result["same_params"]
    assert result["logit_diff"] < 1e-5 and result["grad_diff"] < 1e-4
    assert attention_parity.main(["--cpu-smoke"]) == 0
    assert "parity eager vs disentangled-flash (torch backend), 2 layers, fp32, length 40" in capsys.readouterr().out


def test_infer_paths_agree_and_ours_pads_less(tiny_deberta, question_files, tmp_path):
    questions = read_questions(question_files["valid"], require_answer=True)
    folder = export_backbone(str(tiny_deberta), tmp_path / "m", 64, questions.letters)
    model = AutoModelForMultipleChoice.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ours = infer_speed.run_ours(model, questions, tokenizer, 64, 256, torch.device("cpu"))
    naive = torch.cat(infer_speed.run_baseline(model, questions, tokenizer, 64, 4)).numpy()
    np.testing.assert_allclose(ours, naive, rtol=1e-4, atol=1e-5)
    args = argparse.Namespace(max_length=64, batch=4, batch_tokens=256, repeats=1, skip_baseline=False, profile=False)
    rows = {r["path"]: r for r in infer_speed.bench_model(folder, questions, args)}
    assert rows["baseline"]["computed"] == len(questions) * 5 * 64
    assert rows["ours"]["real"] == rows["baseline"]["real"]
    assert rows["ours"]["real"] / rows["ours"]["computed"] > 0.8


def test_train_speed_counts_real_and_padded_tokens(tiny_deberta, question_files, tmp_path):
    cfg = TrainConfig(
        model=str(tiny_deberta),
        max_steps=2,
        per_device_batch=3,
        max_length=48,
        precision="fp32",
        save_steps=10**6,
        logging_steps=10**6,
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_deberta)
    features = encode(read_questions(question_files["train"], require_answer=True), tokenizer, 48)
    ours = train_speed.train_once(cfg, features, tokenizer, False, tmp_path / "ours")
    naive = train_speed.train_once(cfg, features, tokenizer, True, tmp_path / "naive")
    assert naive["computed"] == 2 * 3 * 5 * 48
    assert 0 < ours["real"] <= ours["computed"] < naive["computed"]
    assert token_counts([{"attention_mask": torch.tensor([[1, 1, 0]]), "input_ids": torch.zeros(1, 3)}]) == (2, 3)


def test_cli_help_bench_times_a_real_process():
    from bench import cli_help

    [t] = cli_help.seconds(["-c", "pass"], 1)
    assert 0 < t < 60 and set(cli_help.COMMANDS) >= {"python train.py --help", "python infer.py --help"}


def test_retrieval_recall_counts_a_passage_inside_the_question_own_context(tmp_path):
    import pandas as pd

    from bench import retrieve_quality
    from mcq.retrieve.index import build_index, open_index

    contexts = ["Magma erupts from a volcano as lava.", "Plants make glucose from sunlight by photosynthesis."]
    pd.DataFrame({"text": contexts}).to_csv(tmp_path / "c.csv", index_label="id")
    build_index([tmp_path / "c.csv"], tmp_path / "idx")
    own = [retrieve_quality.normalise(c) for c in contexts]
    scores, qps = retrieve_quality.recall(open_index(tmp_path / "idx"), ["volcano lava", "glucose sunlight"], own)
    assert scores == {1: 1.0, 3: 1.0, 5: 1.0} and qps > 0
    swapped, _ = retrieve_quality.recall(open_index(tmp_path / "idx"), ["glucose sunlight", "volcano lava"], own)
    assert swapped[1] == 0.0  # each query finds the other question's context: no hit at rank 1


def test_synthetic_corpus_has_the_asked_passages_and_lengths(tmp_path):
    import pandas as pd

    from bench import retrieve_scale

    retrieve_scale.synthetic(tmp_path / "s.parquet", 250, vocab=500)
    frame = pd.read_parquet(tmp_path / "s.parquet")
    words = frame["text"].str.split().str.len()
    assert len(frame) == 250 and frame["id"].is_unique and words.between(60, 120).all()


@pytest.mark.skipif(not STEM1K.is_file(), reason="needs ../shared/data/llmse_stem1k_with_context.csv")
@pytest.mark.parametrize("kind", ["wiki", "unigram"])
def test_corpora_of_real_words_have_the_asked_passages_and_stem1k_questions_beside_them(tmp_path, kind):
    import json

    import pandas as pd

    from bench import retrieve_scale

    retrieve_scale.CORPORA[kind](tmp_path / "c.parquet", 6000)  # (unigram: stem1k's 2,136 passages, then drawn)
    frame = pd.read_parquet(tmp_path / "c.parquet")
    assert len(frame) == 6000 and frame["id"].is_unique
    words = frame["text"].iloc[3000:].str.split().explode()
    made_up = words.str.match(r"^zq[0-9a-f]+$").mean()
    assert 0.1 < made_up < 0.25  # the long tail: ~20 % of a passage's length added
    queries = json.loads((tmp_path / "c.queries.json").read_text())
    assert len(queries) == 1000 and all(isinstance(q, str) and q for q in queries)


def test_search_runs_are_summed_up_by_their_medians():
    from bench.retrieve_scale import median_run

    runs = [{"query_ms_0": 3.0, "search_rss": 10, "queries": 5}, {"query_ms_0": 1.0, "search_rss": 30, "queries": 5},
            {"query_ms_0": 2.0, "search_rss": 20, "queries": 5}]  # fmt: skip
    out = median_run(runs)
    assert out["query_ms_0"] == 2.0 and out["search_rss"] == 20 and out["query_ms_0_runs"] == [3.0, 1.0, 2.0]


def test_suite_time_pairs_its_runs_and_takes_medians_of_the_ratios():
    pairs = [
        ({"wall": 30.0, "cpu": 60.0}, {"wall": 60.0, "cpu": 90.0}),
        ({"wall": 40.0, "cpu": 50.0}, {"wall": 50.0, "cpu": 100.0}),
        ({"wall": 20.0, "cpu": 70.0}, {"wall": 25.0, "cpu": 70.0}),
    ]
    s = suite_time.summarise(pairs)
    assert (s["a_wall"], s["b_wall"], s["a_cpu"], s["b_cpu"]) == (30.0, 50.0, 60.0, 90.0)
    assert s["ratios_wall"] == [0.5, 0.8, 0.8] and s["ratio_wall"] == 0.8  # the pairs' median, not 30 / 50
    assert s["ratio_cpu"] == pytest.approx(2 / 3)


def test_suite_time_times_a_real_pytest_run_and_its_exit_code(tmp_path):
    (tmp_path / "test_one.py").write_text(
        "import time\n\ndef test_ok():\n    time.sleep(0.2)\n\ndef test_no():\n    assert False\n"
    )
    passed = suite_time.timed(tmp_path, ["-p", "no:cacheprovider", "-k", "ok"])
    assert passed["code"] == 0 and passed["wall"] >= 0.2 and passed["cpu"] > 0
    assert suite_time.timed(tmp_path, ["-p", "no:cacheprovider"])["code"] == 1


def test_suite_time_keeps_the_tests_that_descend_from_the_old_suite():
    old = [
        "tests/test_data.py::test_reads[a]",
        "tests/test_data.py::test_to_frame",
        "tests/test_sub.py::test_map3_old",
    ]
    new = [
        "tests/core/test_data.py::test_reads[a]",
        "tests/core/test_data.py::test_reads[b]",
        "tests/core/test_submission.py::test_map3_score",
        "tests/ablate/test_stats.py::test_new",
    ]
    kept = suite_time.same_tests(new, old, also=["tests/core/test_submission.py::test_map3_score"])
    assert kept == ["tests/core/test_data.py::test_reads[a]", "tests/core/test_submission.py::test_map3_score"]
    with pytest.raises(SystemExit, match="test_gone"):
        suite_time.same_tests(new, old, also=["tests/x.py::test_gone"])


def test_blend_rule_scores_both_rules_against_equal_weights_on_the_same_draws():
    from bench import blend_rule

    clear = blend_rule.scenario(blend_rule.SCENARIOS["3 good + 3 weak (0.3)"], 100, draws=3)
    assert clear["draws"] == 3 and 0.2 < clear["equal_map3"] < 1
    for rule in ("gain > 0", "interval > 0"):  # dropping three nearly useless models is a real, large gain
        assert clear[rule]["tuned"] == 3 and clear[rule]["minus_equal"] > 0.03
    same = blend_rule.scenario(blend_rule.SCENARIOS["3 seeds of equal quality"], 40, draws=3)
    assert same["interval > 0"]["tuned"] <= same["gain > 0"]["tuned"]
    assert same["interval > 0"]["tuned"] == 0 and same["interval > 0"]["minus_equal"] == 0.0


def test_hybrid_weight_finds_the_first_hit_of_each_fused_ranking():
    from bench import hybrid_weight

    hits = np.zeros((3, 6), dtype=bool)
    hits[0, 4] = hits[1, 2] = hits[1, 5] = True  # query 2 has no passage of its own
    ids = np.array([[1, 4, 0], [5, 2, -1], [0, 1, 2]])
    ranks = hybrid_weight.first_hit_ranks(ids, hits)
    assert ranks.tolist() == [2, 1, 0]
    assert hybrid_weight.recall_at(ranks) == {1: 1 / 3, 3: 2 / 3, 5: 2 / 3}
    assert hybrid_weight.first_hit_ranks(np.array([[-1, -1]]), np.ones((1, 6), dtype=bool)).tolist() == [0]


def test_open_book_longer_scores_each_setting_against_the_first(tmp_path, question_files, capsys):
    """Settings already inferred are read back, not run again: each row's figures are its own logits'."""
    from bench import open_book_longer
    from mcq.core.metrics import map3_score

    questions = read_questions(question_files["valid"], require_answer=True)
    rng = np.random.default_rng(0)
    ensembles = {}
    for name in ("k3-c2000-t192", "k5-c4000-t384"):
        folder = tmp_path / name
        folder.mkdir()
        for seed in (0, 1):
            np.save(folder / f"logits_seed{seed}.npy", rng.normal(size=(len(questions), 5)).astype(np.float32))
        ensembles[name] = rng.normal(size=(len(questions), 5)).astype(np.float32)
        np.save(folder / "logits_ensemble.npy", ensembles[name])
    args = ["--models", "unused", "--index", "unused", "--test", str(question_files["valid"]), "--work", str(tmp_path)]
    assert open_book_longer.main([*args, "--settings", "3,2000,192", "5,4000,384"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 3 |", "| 5 |"))]
    answers = questions.answers or []
    first, second = (map3_score(ensembles[n], answers, questions.options) for n in ensembles)
    assert f"| {first:.4f} | +0.0000" in rows[0]
    assert f"| {second:.4f} | {second - first:+.4f}" in rows[1]
    with pytest.raises(SystemExit, match="not k,context_chars,max_length"):
        open_book_longer.setting("3,2000")
    with pytest.raises(SystemExit, match="not k,context_chars,max_length"):  # before inferring the first (no models)
        open_book_longer.main([*args, "--settings", "9,9,9", "3,2000"])


def test_every_benchmark_script_parses_its_arguments():
    """`python bench/X.py --help` must answer, not start a long measurement (dense_gpu.py once ignored it)."""
    from pathlib import Path

    scripts = [p for p in Path(bench_pkg.__file__).parent.glob("*.py") if '__name__ == "__main__"' in p.read_text()]
    assert len(scripts) > 15
    assert [p.name for p in scripts if "argparse" not in p.read_text()] == []
