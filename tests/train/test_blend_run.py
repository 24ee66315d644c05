"""The blend of a run's models with the evidence scores: chosen on the validation set after the seeds, recorded
in every exported model, applied by infer.py without flags, and refused when the models given are not the ones
it was chosen for."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config, write_questions
from test_open_book import write_corpus

import mcq.core.predict
from mcq.cli import main_guard
from mcq.core.blend import blend_members
from mcq.core.data import read_questions
from mcq.infer import cli as infer_cli
from mcq.retrieve.index import build_index
from mcq.train.run import run_training


@pytest.fixture(scope="module")
def blend_run(tiny_deberta, tmp_path_factory):
    folder = tmp_path_factory.mktemp("blend")
    files = {"train": write_questions(folder / "train.csv", 12, seed=1),
             "valid": write_questions(folder / "valid.csv", 24, seed=2)}  # fmt: skip
    build_index([write_corpus(folder / "corpus.csv", 40, seed=5)], folder / "index")
    cfg = tiny_config(tiny_deberta, files, folder / "run", seeds=[0, 1], max_steps=1, head_steps=1,
                      index=str(folder / "index"), retrieve_k=2, context_chars=300, max_length=64)  # fmt: skip
    return folder, cfg, run_training(cfg)


def metas(folder):
    return [json.loads((folder / "run" / "models" / s / "mcq_model.json").read_text()) for s in ("seed0", "seed1")]


def test_the_blend_is_chosen_after_the_seeds_and_recorded_in_every_model(blend_run):
    folder, cfg, report = blend_run
    blend = report["blend"]
    assert blend["members"] == ["models", "lexical"]  # a BM25 index has no embedder: no dense evidence
    assert sum(blend["weights"]) == pytest.approx(1.0) and blend["choice"] in ("alone", "equal", "tuned")
    assert blend["n_questions"] == 24 and blend["valid"] == cfg.valid
    seeds = metas(folder)
    ids = [m["export_id"] for m in seeds]
    assert ids[0].endswith("-seed0") and ids[1].endswith("-seed1") and ids[0][:12] == ids[1][:12]
    for meta in seeds:
        assert meta["blend"] == blend | {"models": ids}
    valid = read_questions(cfg.valid)
    lexical = np.load(folder / "run" / "valid_evidence_lexical.npy")
    assert lexical.shape == (24, 5) and (lexical >= 0).all()
    assert "Blend with the evidence scores" in (folder / "run" / "report.md").read_text()
    assert blend["map3"]["models alone"] == pytest.approx(report["ensemble_valid_map3"])
    assert len(valid) == 24


def test_infer_applies_the_recorded_blend_without_flags_and_off_turns_it_off(blend_run, tmp_path, capsys):
    folder, cfg, _ = blend_run
    base = ["--models", f"{folder}/run/models", "--test", cfg.valid, "--index", str(folder / "index")]
    assert infer_cli.main([*base, "--out", str(tmp_path / "on" / "s.csv")]) == 0
    printed = capsys.readouterr().out
    blend = metas(folder)[0]["blend"]
    assert f"blend ({blend['choice']})" in printed and "MAP@3 blend:" in printed
    on = tmp_path / "on"
    members = {"models": np.load(on / "logits_ensemble.npy"), "lexical": np.load(on / "evidence_lexical.npy")}
    valid = read_questions(cfg.valid)
    expected = blend_members(members, blend["weights"], valid.options)
    np.testing.assert_allclose(np.load(on / "logits_blend.npy"), expected, atol=1e-5)
    # the blend scores the validation set as training measured it (same contexts, same models)
    np.testing.assert_allclose(np.load(on / "evidence_lexical.npy"),
                               np.load(folder / "run" / "valid_evidence_lexical.npy"), atol=1e-6)  # fmt: skip

    assert infer_cli.main([*base, "--out", str(tmp_path / "off" / "s.csv"), "--blend", "off"]) == 0
    assert "MAP@3 blend" not in capsys.readouterr().out
    assert not (tmp_path / "off" / "logits_blend.npy").exists()
    off = pd.read_csv(tmp_path / "off" / "s.csv")
    assert len(off) == 24


def test_a_blend_for_other_models_is_refused_before_any_model_loads(blend_run, tmp_path, capsys, monkeypatch):
    folder, cfg, _ = blend_run

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the blend was checked")

    monkeypatch.setattr(mcq.core.predict, "load_model", no_load)
    out = tmp_path / "o" / "s.csv"
    argv = ["--models", f"{folder}/run/models/seed0", "--test", cfg.valid, "--out", str(out),
            "--index", str(folder / "index")]  # fmt: skip
    assert main_guard(lambda: infer_cli.main(argv)) == 2
    err = capsys.readouterr().err
    assert "recorded blend does not match the models given" in err and "--blend off" in err and err.count("\n") == 1
    assert not out.parent.exists()


def with_blend(folder, dest, **changes):
    """A copy of the run's models whose recorded blend has these keys changed."""
    shutil.copytree(folder / "run" / "models", dest)
    for seed in ("seed0", "seed1"):
        path = dest / seed / "mcq_model.json"
        meta = json.loads(path.read_text())
        meta["blend"] |= changes
        path.write_text(json.dumps(meta))
    return dest


def test_a_blend_needing_an_embedder_the_index_lacks_is_one_line(blend_run, tmp_path, capsys):
    folder, cfg, _ = blend_run
    dense = {"members": ["models", "lexical", "dense"], "weights": [0.4, 0.3, 0.3], "embedder": "e5"}
    models = with_blend(folder, tmp_path / "models", **dense)
    argv = ["--models", str(models), "--test", cfg.valid, "--out", str(tmp_path / "o" / "s.csv"),
            "--index", str(folder / "index")]  # fmt: skip
    assert main_guard(lambda: infer_cli.main(argv)) == 2
    err = capsys.readouterr().err
    assert "uses dense evidence (measured with embedder e5)" in err and "--evidence-embedder" in err


def test_a_damaged_blend_record_is_one_line(blend_run, tmp_path, capsys):
    folder, cfg, _ = blend_run
    models = with_blend(folder, tmp_path / "models", weights=[1.0])
    argv = ["--models", str(models), "--test", cfg.valid, "--out", str(tmp_path / "o" / "s.csv")]
    assert main_guard(lambda: infer_cli.main(argv)) == 2
    assert "its blend has 2 members and 1 weights" in capsys.readouterr().err


def test_a_small_validation_set_chooses_no_blend(tiny_deberta, tmp_path, caplog):
    files = {"train": write_questions(tmp_path / "train.csv", 8, seed=1),
             "valid": write_questions(tmp_path / "valid.csv", 6, seed=2, context=True)}  # fmt: skip
    cfg = tiny_config(tiny_deberta, files, tmp_path / "run", seeds=[0], max_steps=1, head_steps=0)
    caplog.set_level("INFO")
    report = run_training(cfg)
    assert "blend" not in report and "too few to choose a blend" in caplog.text
    assert "blend" not in json.loads((tmp_path / "run" / "models" / "seed0" / "mcq_model.json").read_text())


def test_a_closed_book_run_blends_with_evidence_read_from_its_own_retrieval(tiny_deberta, tmp_path):
    """context_source none: the models read no context, yet the blend's evidence reads evidence_k passages
    from the index, in training and at inference alike."""
    files = {"train": write_questions(tmp_path / "train.csv", 12, seed=1),
             "valid": write_questions(tmp_path / "valid.csv", 24, seed=2)}  # fmt: skip
    build_index([write_corpus(tmp_path / "corpus.csv", 40, seed=5)], tmp_path / "index")
    cfg = tiny_config(
        tiny_deberta,
        files,
        tmp_path / "run",
        seeds=[0],
        max_steps=1,
        head_steps=0,
        index=str(tmp_path / "index"),
        context_source="none",
        evidence_k=4,
        evidence_chars=900,
    )
    report = run_training(cfg)
    assert report["blend"]["evidence_k"] == 4 and report["blend"]["evidence_chars"] == 900
    meta = json.loads((tmp_path / "run" / "models" / "seed0" / "mcq_model.json").read_text())
    assert meta["context_source"] == "none" and "retrieval" not in meta
    out = tmp_path / "o" / "s.csv"
    assert infer_cli.main(["--models", str(tmp_path / "run" / "models"), "--test", cfg.valid, "--out", str(out),
                           "--index", str(tmp_path / "index")]) == 0  # fmt: skip
    # the model read no context: its logits are those training scored; the evidence read 4 passages
    np.testing.assert_allclose(np.load(out.parent / "logits_seed0.npy"),
                               np.load(tmp_path / "run" / "seed0" / "valid_logits.npy"), atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(np.load(out.parent / "evidence_lexical.npy"),
                               np.load(tmp_path / "run" / "valid_evidence_lexical.npy"), atol=1e-6)  # fmt: skip
