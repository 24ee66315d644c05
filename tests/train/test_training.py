"""End to end on a tiny DeBERTa: three seeds -> export -> reload -> same logits; reruns, resume, report."""

import dataclasses
import gc
import json
import re
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sentence_transformers_folder, tiny_config, train_killed_at, write_questions
from transformers import AutoModelForMultipleChoice, AutoTokenizer

from mcq.cli import freeze_imports, main_guard
from mcq.config import load_config
from mcq.core.data import read_questions
from mcq.core.export import META_FILE
from mcq.core.features import MultipleChoiceCollator, encode
from mcq.errors import ConfigError, DataError
from mcq.infer.config import InferConfig
from mcq.infer.run import run_inference
from mcq.train import cli as train_cli
from mcq.train.config import TrainConfig
from mcq.train.lr import warmup_steps_for
from mcq.train.phases import recipe_phases
from mcq.train.run import run_training


@pytest.fixture
def built_run(trained_run):
    """The session's three-seed run, read only."""
    return trained_run


@pytest.fixture
def three_seed_run(built_run, tmp_path):
    """A private copy of the module's three-seed run, free to resume, retrain or rescore."""
    cfg, report = built_run
    out = tmp_path / "run"
    shutil.copytree(cfg.output_dir, out)
    return dataclasses.replace(cfg, output_dir=str(out)), report


def test_three_seeds_export_report_and_reload_to_the_same_logits(built_run, question_files, tiny_deberta):
    cfg, report = built_run
    run = Path(cfg.output_dir)
    assert [s["seed"] for s in report["seeds"]] == [0, 1, 2]
    valid = read_questions(question_files["valid"], require_answer=True)
    for seed in report["seeds"]:
        folder = run / "models" / f"seed{seed['seed']}"
        names = {p.name for p in folder.iterdir()}
        assert {"model.safetensors", "config.json", "tokenizer.json", META_FILE} <= names
        assert not any("optimizer" in n or n.startswith("checkpoint") for n in names), names
        meta = json.loads((folder / META_FILE).read_text())
        assert meta["seed"] == seed["seed"] and meta["max_length"] == 48
        assert meta["valid_map3"] == pytest.approx(seed["valid_map3"])
        assert 0.0 <= seed["valid_map3"] <= 1.0
        assert len(seed["eval_history"]) == 1  # one epoch -> one per-epoch score
        # the end-of-epoch score (Trainer's loop) is the exported model's score (inference path)
        assert seed["eval_history"][-1]["map3"] == pytest.approx(seed["valid_map3"], abs=1e-9)
    # reload an export by hand and compare with the logits training saved for the report
    model = AutoModelForMultipleChoice.from_pretrained(run / "models" / "seed1").eval()
    tokenizer = AutoTokenizer.from_pretrained(run / "models" / "seed1")
    features = encode(valid, tokenizer, 48)
    batch = MultipleChoiceCollator(tokenizer)([features[i] for i in range(len(features))])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.numpy()
    np.testing.assert_allclose(logits, np.load(run / "seed1" / "valid_logits.npy"), rtol=1e-4, atol=1e-5)
    # the report files exist and agree with the returned report
    on_disk = json.loads((run / "report.json").read_text())
    assert on_disk["ensemble_valid_map3"] == pytest.approx(report["ensemble_valid_map3"])
    assert "Mean-logit ensemble of 3 seeds" in (run / "report.md").read_text()
    assert (run / "lr_schedule.png").read_bytes()[:4] == b"\x89PNG"
    # phase 2 trained with per-group LRs, logged at every logging step
    groups = report["seeds"][0]["groups"]
    assert groups[0]["name"] == "embeddings" and groups[-1]["name"].startswith("head")
    assert groups[0]["lr"] < groups[-1]["lr"]
    assert any("lr/layer.0" in e for e in report["seeds"][0]["lr_log"])
    # Trainer's own `learning_rate` field is the top LR, not the first (embeddings) group's
    logged = [e for e in report["seeds"][0]["lr_log"] if e["lr/head"] > 0]
    assert logged and all(e["learning_rate"] == pytest.approx(e["lr/head"]) for e in logged)
    assert all(e["lr/head"] > e["lr/embeddings"] for e in logged)


def test_seeds_differ_and_a_seed_reproduces(tiny_deberta, question_files, tmp_path, built_run):
    cfg, _ = built_run
    run = Path(cfg.output_dir)
    logits = {s: np.load(run / f"seed{s}" / "valid_logits.npy") for s in (0, 1)}
    assert not np.allclose(logits[0], logits[1]), "different seeds gave identical models"
    again = tiny_config(tiny_deberta, question_files, tmp_path / "again", seeds=[1])
    run_training(again)
    np.testing.assert_allclose(
        np.load(tmp_path / "again" / "seed1" / "valid_logits.npy"), logits[1], rtol=1e-5, atol=1e-6
    )


def test_training_moves_the_weights_and_keeps_word_embeddings(built_run, tiny_deberta):
    cfg, _ = built_run
    before = AutoModelForMultipleChoice.from_pretrained(tiny_deberta).state_dict()
    after = AutoModelForMultipleChoice.from_pretrained(Path(cfg.output_dir) / "models" / "seed0").state_dict()
    word = "deberta.embeddings.word_embeddings.weight"
    assert torch.equal(before[word], after[word]), "word embeddings changed although frozen"
    layer = "deberta.encoder.layer.0.attention.self.query_proj.weight"
    assert not torch.equal(before[layer], after[layer]), "encoder layer 0 did not train"
    rel = "deberta.encoder.rel_embeddings.weight"
    assert not torch.equal(before[rel], after[rel]), "relative position embeddings did not train"


def test_rerun_without_resume_refuses_and_resume_skips_finished_seeds(three_seed_run, caplog):
    cfg, _ = three_seed_run
    with pytest.raises(ConfigError, match="--resume"):
        run_training(cfg)
    export = Path(cfg.output_dir) / "models" / "seed2"
    stamp = (export / "model.safetensors").stat().st_mtime_ns
    shutil.rmtree(Path(cfg.output_dir) / "models" / "seed1")
    caplog.set_level("INFO")
    report = run_training(cfg, resume=True)
    assert [s.get("skipped", False) for s in report["seeds"]] == [True, False, True]
    assert (export / "model.safetensors").stat().st_mtime_ns == stamp
    assert "ensemble_valid_map3" in report
    # the finished seeds keep their part of the report: per-epoch MAP@3, parameter counts, wall time
    _, first = three_seed_run
    for kept, before in zip(report["seeds"][::2], first["seeds"][::2]):
        for key in ("eval_history", "total_params", "trainable_params", "wall_s", "groups"):
            assert kept[key] == before[key], key
    table = (Path(cfg.output_dir) / "report.md").read_text()
    assert "(earlier run)" not in table and table.count(f"{first['seeds'][0]['trainable_params']:,} /") == 3


def test_resume_with_other_validation_questions_rescores_finished_seeds(three_seed_run, tmp_path, caplog):
    cfg, _ = three_seed_run
    other = write_questions(tmp_path / "valid2.csv", 12, seed=7)  # as many questions, other content
    cfg = dataclasses.replace(cfg, valid=str(other))
    caplog.set_level("INFO")
    report = run_training(cfg, resume=True)
    assert caplog.text.count("the validation questions changed since it was scored") == 3
    fresh = run_inference(
        InferConfig(
            models=[str(Path(cfg.output_dir) / "models")],
            test=str(other),
            out=str(tmp_path / "inf" / "submission.csv"),
        )
    )
    assert report["ensemble_valid_map3"] == pytest.approx(fresh.map3["ensemble"])
    assert [s["valid_map3"] for s in report["seeds"]] == pytest.approx([fresh.map3[f"seed{i}"] for i in range(3)])
    caplog.clear()
    run_training(cfg, resume=True)  # same questions again: the saved logits are reused
    assert "changed since it was scored" not in caplog.text


def test_killed_run_resumes_from_its_last_checkpoint(tiny_deberta, question_files, tmp_path, monkeypatch, caplog):
    cfg = tiny_config(tiny_deberta, question_files, tmp_path / "run", seeds=[0], epochs=2, save_steps=3)
    train_killed_at(cfg, 2 + 8, monkeypatch)  # 2 head steps, then die in phase 2 after checkpoint-6
    assert (tmp_path / "run" / "seed0" / "phase2" / "checkpoint-6").is_dir()
    assert (tmp_path / "run" / "seed0" / "head.safetensors").is_file()
    caplog.set_level("INFO")
    report = run_training(cfg, resume=True)
    assert "resuming from" in caplog.text and "checkpoint-6" in caplog.text
    assert "phase 1 done earlier" in caplog.text
    assert report["seeds"][0]["valid_map3"] is not None
    assert not list((tmp_path / "run" / "seed0" / "phase2").glob("checkpoint-*")), "checkpoints kept after export"


def test_cli_flags_override_the_yaml_and_unknown_keys_fail(tiny_deberta, question_files, tmp_path, capsys):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        f"model: {tiny_deberta}\ntrain: [{question_files['train']}]\nper_device_batch: 4\nmax_length: 48\n"
    )
    cfg = load_config(TrainConfig, cfg_file, {"seeds": [5]})
    assert cfg.seeds == [5] and cfg.per_device_batch == 4 and cfg.max_length == 48
    (tmp_path / "bad.yaml").write_text("per_device_bach: 4\n")
    with pytest.raises(ConfigError, match="per_device_bach"):
        load_config(TrainConfig, tmp_path / "bad.yaml")
    rc = main_guard(lambda: train_cli.main(["--config", str(tmp_path / "bad.yaml")]))
    assert rc == 2 and "unknown key" in capsys.readouterr().err


def test_yaml_values_take_the_fields_types(tmp_path, capsys):
    """PyYAML reads `2e-5` (no dot) as a string; a single file for a list key needs no brackets."""
    (tmp_path / "c.yaml").write_text("lr: 2e-5\nadam_eps: 1e-8\ntrain: data/train.csv\nepochs: 2\nseeds: 7\n")
    cfg = load_config(TrainConfig, tmp_path / "c.yaml")
    assert cfg.lr == 2e-5 and cfg.adam_eps == 1e-8 and isinstance(cfg.epochs, float)
    assert cfg.train == ["data/train.csv"] and cfg.seeds == [7]
    for text, needle in (
        ("per_device_batch: 4.5\n", "per_device_batch: expected int, got 4.5"),
        ("lr: fast\n", "lr: expected float, got 'fast'"),
        ("group_by_length: 1\n", "group_by_length: expected bool, got 1"),
        ("max_length:\n", "max_length: needs a value"),
    ):
        (tmp_path / "bad.yaml").write_text(text)
        rc = main_guard(lambda: train_cli.main(["--config", str(tmp_path / "bad.yaml")]))
        assert rc == 2 and needle in capsys.readouterr().err


def test_cli_trains_and_prints_the_ensemble(tiny_deberta, question_files, tmp_path, capsys, monkeypatch):
    frozen_before_training = []
    monkeypatch.setattr("mcq.cli.freeze_imports", lambda: frozen_before_training.append(True))
    monkeypatch.setattr("mcq.train.run.run_training", _after(frozen_before_training, run_training))
    args = [
        "--model",
        str(tiny_deberta),
        "--train",
        str(question_files["train"]),
        "--valid",
        str(question_files["valid"]),
        "--output-dir",
        str(tmp_path / "cli"),
        "--seeds",
        "0",
        "1",
        "--head-steps",
        "1",
        "--per-device-batch",
        "8",
        "--max-length",
        "48",
        "--max-steps",
        "2",
        "--lr",
        "1e-3",
        "--no-group-by-length",
    ]
    assert train_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "ensemble of 2 seeds: valid MAP@3" in out
    report = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert f"seed 1: valid MAP@3 {report['seeds'][1]['valid_map3']:.4f}  ->  " in out
    assert (tmp_path / "cli" / "models" / "seed1" / META_FILE).is_file()
    assert frozen_before_training == [True, "trained"]  # the imports were frozen once, before the seeds trained


def _after(log: list, fn):
    def wrapped(*args, **kwargs):
        log.append("trained")
        return fn(*args, **kwargs)

    return wrapped


class _Cycle:
    def __init__(self):
        self.me = self


def test_freeze_imports_hides_live_objects_but_never_garbage_from_the_collector():
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        before = weakref.ref(_Cycle())  # garbage already: collected by the call, not kept for good
        freeze_imports()
        assert before() is None
        assert gc.get_freeze_count() > 10_000  # torch and transformers are imported: far more than that
        after = weakref.ref(_Cycle())  # garbage made later is still collected
        gc.collect()
        assert after() is None
    finally:
        gc.freeze()


def test_bad_training_data_fails_before_any_training(tiny_deberta, question_files, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prompt,A,B,C,D,E,answer\n1,q,a,b,c,d,e,Z\n")
    cfg = tiny_config(tiny_deberta, {"train": bad, "valid": question_files["valid"]}, tmp_path / "run")
    with pytest.raises(Exception, match="line 2, column 'answer'"):
        run_training(cfg)
    assert not (tmp_path / "run").exists()


def test_lr_is_derived_from_the_pretraining_recipe(tiny_deberta, question_files, tmp_path, caplog):
    from mcq.train.phases import derive_lr

    caplog.set_level("INFO")
    cfg = tiny_config(tiny_deberta, question_files, tmp_path / "r", lr=None, per_device_batch=9, grad_accum=5)
    assert derive_lr(cfg) == pytest.approx(1.7578125e-5)
    assert "x effective batch 45 (9 per device x 5 accumulation x 1 device(s))" in caplog.text


def test_lr_counts_every_gpu_dataparallel_would_use_without_torchrun(
    tiny_deberta, question_files, tmp_path, caplog, monkeypatch
):
    """`python train.py` on a 2-GPU machine: Trainer splits each step over both GPUs (batch x 2)."""
    from mcq.train.phases import derive_lr

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    caplog.set_level("INFO")
    cfg = tiny_config(tiny_deberta, question_files, tmp_path / "r", lr=None, per_device_batch=9, grad_accum=5)
    assert derive_lr(cfg) == pytest.approx(2 * 1.7578125e-5)
    assert "(9 per device x 5 accumulation x 2 device(s))" in caplog.text
    assert "2 GPUs visible without torchrun" in caplog.text
    monkeypatch.setenv("WORLD_SIZE", "4")  # under torchrun its process count decides
    assert derive_lr(cfg) == pytest.approx(4 * 1.7578125e-5)


def test_report_lists_one_row_per_layer_group():
    from mcq.train.report import merge_decay_twins

    groups = [
        {"name": "layer.0", "lr": 1e-5, "params": 10},
        {"name": "layer.0.no_decay", "lr": 1e-5, "params": 2},
        {"name": "head", "lr": 2e-5, "params": 5},
    ]
    assert merge_decay_twins(groups) == [("layer.0", 1e-5, 12), ("head", 2e-5, 5)]


def test_tracker_receives_every_group_lr(tiny_deberta, question_files, tmp_path):
    """report_to: tensorboard gets lr/<group> scalars at each logging step (the per-layer schedule)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(
        tiny_deberta, question_files, tmp_path / "tb", seeds=[0], head_steps=0, max_steps=4, report_to=["tensorboard"]
    )
    run_training(cfg)
    events = sorted((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events, "no tensorboard event file written"
    tags = set()
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"train/lr/embeddings", "train/lr/layer.0", "train/lr/layer.1", "train/lr/head"} <= tags, sorted(tags)


def test_gradient_checkpointing_still_trains_every_layer(tiny_deberta, question_files, tmp_path):
    """Checkpointing with frozen word embeddings must not silently stop gradients reaching the layers."""
    cfg = tiny_config(
        tiny_deberta,
        question_files,
        tmp_path / "gc",
        seeds=[0],
        head_steps=0,
        max_steps=3,
        gradient_checkpointing=True,
    )
    run_training(cfg)
    before = AutoModelForMultipleChoice.from_pretrained(tiny_deberta).state_dict()
    after = AutoModelForMultipleChoice.from_pretrained(tmp_path / "gc" / "models" / "seed0").state_dict()
    for name in (
        "deberta.encoder.layer.0.attention.self.query_proj.weight",
        "deberta.encoder.layer.1.output.dense.weight",
    ):
        assert not torch.equal(before[name], after[name]), f"{name} did not train under gradient checkpointing"


def test_help_shows_the_recipe_defaults(capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "questions per device per step (each question is n_options sequences) (default: 45)" in text
    assert "(default: 0 1 2)" in text and "(default: on)" in text and "(default: None)" not in text


def test_logged_lrs_are_the_recipe_formula_at_every_step(built_run):
    """One source of truth: each group's LR that Trainer logged is Phase.lr_at for that group and step."""
    cfg, report = built_run
    seed = report["seeds"][0]
    full = recipe_phases(cfg, report["top_lr"])[-1]
    names = [g["name"] for g in seed["groups"] if not g["name"].endswith(".no_decay")]
    total = max(e["step"] for e in seed["lr_log"])
    assert total == 6 and warmup_steps_for(full.warmup, total) == 1  # 24 questions / 4 a step; ceil(0.1 x 6)
    for entry in seed["lr_log"]:
        for g, name in enumerate(names):
            # logged after the optimizer step, before the scheduler's: the LR step `step` (1-based) trained with
            expected = full.lr_at(g, len(names), entry["step"] - 1, total)
            assert entry[f"lr/{name}"] == pytest.approx(expected, rel=1e-9, abs=1e-15), (entry["step"], name)


def test_an_unreachable_model_name_is_one_line_naming_the_fix(question_files, tmp_path, capsys, monkeypatch):
    """Offline (as in a Kaggle kernel or here), a hub name is one clear line, not the hub's traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [
        "--model",
        "microsoft/deberta-v3-large-typo",
        "--train",
        str(question_files["train"]),
        "--output-dir",
        str(tmp_path / "run"),
    ]
    assert main_guard(lambda: train_cli.main(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: model 'microsoft/deberta-v3-large-typo'")
    assert "offline or the name is unknown" in err and "--model LOCAL_FOLDER" in err


def test_resume_with_other_settings_says_which_and_trains_nothing(three_seed_run, tmp_path):
    cfg, _ = three_seed_run
    other = write_questions(tmp_path / "other-train.csv", 24, seed=9)
    changed = dataclasses.replace(cfg, max_length=64, train=[str(other)])
    with pytest.raises(ConfigError) as err:
        run_training(changed, resume=True)
    message = str(err.value)
    assert "other settings than the run started with" in message
    assert "max_length: 48 -> 64" in message and "train: [" in message and "other-train.csv" in message
    assert "valid" not in message.split("(")[1], "settings a resume may change are not listed"
    # what a resume may change goes through: other validation questions, another output folder
    moved = dataclasses.replace(cfg, logging_steps=5, output_dir=cfg.output_dir)
    assert run_training(moved, resume=True)["seeds"][0]["skipped"]


def test_a_second_training_into_the_same_folder_exits_at_once(tiny_deberta, question_files, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
            "fcntl.flock(f, fcntl.LOCK_EX); f.write('PID 4242 on trainer-host, since today'); f.flush(); "
            "print('locked', flush=True); time.sleep(60)",
            str(run / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=r"in use by a training run \(PID 4242 on trainer-host"):
            run_training(tiny_config(tiny_deberta, question_files, run))
        assert not (run / "seed0").exists(), "the second run wrote into the folder"
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(tiny_deberta, question_files, tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("PID 999999 on trainer-host, since yesterday\n")  # holder killed: no flock held
    cfg = tiny_config(tiny_deberta, question_files, run, train=[str(tmp_path / "missing.csv")])
    caplog.set_level("WARNING")
    with pytest.raises(DataError):  # it got past the lock: stopped by the data, as it should be
        run_training(cfg)
    assert "taking over the lock left by PID 999999 on trainer-host" in caplog.text
    assert not (run / ".lock").exists(), "the lock was not released"


@pytest.mark.parametrize("policy", ["error", "warn"])
def test_validation_questions_inside_the_training_data_are_caught(
    tiny_deberta, question_files, tmp_path, caplog, policy
):
    from mcq.train.run import load_run_data

    cfg = tiny_config(
        tiny_deberta,
        question_files,
        tmp_path / "run",
        extra_train=[str(question_files["valid"])],
        valid_overlap=policy,
    )
    caplog.set_level("WARNING")
    if policy == "error":
        with pytest.raises(DataError, match="12 of 12 validation questions are also in the training data"):
            load_run_data(cfg)
    else:
        assert len(load_run_data(cfg).train) == 36
        assert "12 of 12 validation questions are also in the training data" in caplog.text


def test_a_folder_given_as_a_question_file_says_so(tmp_path):
    with pytest.raises(DataError, match="is a folder, not a question file"):
        read_questions(tmp_path)


def test_phase_two_says_the_lr_the_model_learns_at_on_average(caplog):
    from mcq.train.phases import Phase
    from mcq.train.seed import log_phase_lrs

    caplog.set_level("INFO")
    groups = [{"name": "embeddings", "lr": 1e-5, "params": 300}, {"name": "head", "lr": 1e-4, "params": 100}]
    log_phase_lrs(0, Phase.full(1e-4), groups)
    # (1e-5 x 300 + 1e-4 x 100) / 400 = 3.25e-5
    assert "peak LR 0.0001 at the top, 1e-05 at embeddings, 3.25e-05 averaged" in caplog.text
    assert "(0.33 of the top" in caplog.text


def test_mean_normalised_lr_averages_to_the_configured_lr(tiny_deberta):
    from mcq.core.model import load_multiple_choice
    from mcq.train.lr import LayerRule, mean_lr
    from mcq.train.optim import param_groups
    from mcq.train.phases import Phase, derive_lr, freeze_for

    model = load_multiple_choice(str(tiny_deberta))
    phase = Phase.full(1e-4, LayerRule("cosine", 0.1))
    freeze_for(model, phase)  # word embeddings frozen: they count for nothing in the average
    cfg = tiny_config(tiny_deberta, {"train": "t.csv", "valid": None}, "out", lr=1e-4, layer_lr_norm="mean",
                      layer_lr_shape="cosine", layer_lr_min=0.1)  # fmt: skip
    raised = derive_lr(cfg, model)
    assert raised > 1e-4
    groups = param_groups(model, raised, phase.layers, 0.01)
    counts = [sum(p.numel() for p in g["params"]) for g in groups]
    assert mean_lr([g["lr"] for g in groups], counts) == pytest.approx(1e-4)
    assert max(g["lr"] for g in groups) == pytest.approx(raised)
    constant = dataclasses.replace(cfg, layer_lr_shape="constant")  # one LR everywhere: nothing to raise
    assert derive_lr(constant, model) == pytest.approx(1e-4)
    assert derive_lr(dataclasses.replace(cfg, layer_lr_norm="top"), model) == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="layer_lr_norm"):
        tiny_config(tiny_deberta, {"train": "t.csv", "valid": None}, "out", layer_lr_norm="median")


def test_a_new_run_into_a_started_folder_is_refused_whatever_seeds_it_names(three_seed_run):
    """No side door: another seed and max_length without --resume would mix two settings in one folder."""
    cfg, _ = three_seed_run
    config = Path(cfg.output_dir) / "run_config.json"
    before = config.read_text()
    for seeds in ([5], [0, 5]):
        with pytest.raises(ConfigError, match="already holds a run"):
            run_training(dataclasses.replace(cfg, seeds=seeds, max_length=64))
    assert config.read_text() == before and not (Path(cfg.output_dir) / "seed5").exists()


def test_a_training_file_changed_in_place_is_not_resumed_on(three_seed_run, tmp_path):
    cfg, _ = three_seed_run
    shutil.rmtree(Path(cfg.output_dir) / "models" / "seed2")
    train = Path(cfg.train[0])
    saved = train.read_text()
    try:
        train.write_text(saved.replace("?", "!", 1))  # one question edited, same path
        with pytest.raises(ConfigError, match="training questions changed since the run started") as err:
            run_training(cfg, resume=True)
        assert str(train) in str(err.value)
    finally:
        train.write_text(saved)
    assert run_training(cfg, resume=True)["seeds"][2].get("skipped") is None


def test_validation_questions_in_training_with_their_options_reordered_are_a_leak(question_files, tmp_path):
    import pandas as pd

    from mcq.train.run import check_overlap

    train = read_questions(question_files["train"], require_answer=True)
    frame = pd.read_csv(question_files["train"], dtype=str, keep_default_na=False).head(3)
    frame[["A", "B", "C", "D", "E"]] = frame[["E", "D", "C", "B", "A"]].to_numpy()
    frame["id"] = [f"v{i}" for i in range(3)]
    frame.to_csv(tmp_path / "valid.csv", index=False)
    with pytest.raises(DataError, match="3 of 3 validation questions are also in the training data"):
        check_overlap(train, read_questions(tmp_path / "valid.csv"), "error")


def test_negative_seeds_and_a_tiny_max_length_are_refused_before_reading_the_data(tmp_path):
    with pytest.raises(ConfigError, match="seeds: must be >= 0"):
        TrainConfig(train=["t.csv"], seeds=[-1], output_dir=str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="max_length: must be at least 16"):
        TrainConfig(train=["t.csv"], max_length=8)
    assert not (tmp_path / "r").exists()


def test_exported_files_get_the_usual_mode(three_seed_run):
    import os
    import stat

    cfg, _ = three_seed_run
    umask = os.umask(0)
    os.umask(umask)
    for path in (Path(cfg.output_dir) / "models" / "seed0").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_half_written_checkpoint_is_not_resumed_from(
    tiny_deberta, question_files, tmp_path, monkeypatch, capsys, caplog
):
    """safetensors reports a full disk as SafetensorError, not OSError: it must still be one line, and the
    checkpoint folder it left half-written must not be what --resume continues from."""
    from safetensors import SafetensorError
    from transformers import Trainer

    from mcq.cli import main_guard
    from mcq.train import cli as train_cli

    cfg = tiny_config(tiny_deberta, question_files, tmp_path / "run", seeds=[0], head_steps=0, save_steps=1,
                      max_steps=3)  # fmt: skip
    real = Trainer._save_checkpoint

    def full_disk_at_step_2(self, model, trial):
        if self.state.global_step == 2:
            Path(self.args.output_dir, "checkpoint-2").mkdir(parents=True)
            (Path(self.args.output_dir) / "checkpoint-2" / "model.safetensors").write_bytes(b"half")
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                  '"No space left on device" })')  # fmt: skip
        return real(self, model, trial)

    monkeypatch.setattr(Trainer, "_save_checkpoint", full_disk_at_step_2)
    argv = ["--train", cfg.train[0], "--valid", str(cfg.valid), "--model", cfg.model, "--output-dir", cfg.output_dir,
            "--seeds", "0", "--head-steps", "0", "--save-steps", "1", "--max-steps", "3", "--max-length", "48",
            "--per-device-batch", "4", "--lr", "1e-3", "--precision", "fp32"]  # fmt: skip
    assert main_guard(lambda: train_cli.main(argv)) == 2
    captured = capsys.readouterr().err  # the error follows Trainer's progress bar on its line
    err = ["error: " + line.split("error: ", 1)[1] for line in captured.splitlines() if "error: " in line]
    assert len(err) == 1 and "seed0" in err[0] and "No space left on device" in err[0] and "--resume" in err[0]
    monkeypatch.setattr(Trainer, "_save_checkpoint", real)
    phase = tmp_path / "run" / "seed0" / "phase2"
    assert (phase / "checkpoint-1").is_dir()
    caplog.set_level("INFO")
    assert main_guard(lambda: train_cli.main([*argv, "--resume"])) == 0
    assert "checkpoint-2: half-written" in caplog.text and "resuming from" in caplog.text
    assert re.search(r"seed 0 .*: resuming from \S*checkpoint-1\b", caplog.text)
    assert (tmp_path / "run" / "models" / "seed0").is_dir()


def test_a_resumed_run_reports_the_time_of_every_process(three_seed_run):
    cfg, first = three_seed_run
    shutil.rmtree(Path(cfg.output_dir) / "models" / "seed1")
    report = run_training(cfg, resume=True)
    kept = first["seeds"][0]["wall_s"] + first["seeds"][2]["wall_s"]
    assert report["total_wall_s"] > report["wall_s"] + kept * 0.99
    assert (
        f"{report['total_wall_s']:.0f}s in all ({report['wall_s']:.0f}s in this process)"
        in (Path(cfg.output_dir) / "report.md").read_text()
    )


def test_a_sentence_transformers_backbone_trained_with_mean_pooling_is_advised_mean(
    tiny_deberta, question_files, tmp_path, caplog
):
    from mcq.train.run import load_run_data

    backbone = tmp_path / "st-backbone"
    shutil.copytree(tiny_deberta, backbone)
    sentence_transformers_folder(backbone, {"pooling_mode_mean_tokens": True})
    caplog.set_level("WARNING")
    load_run_data(tiny_config(backbone, question_files, tmp_path / "cls"))
    assert f"{backbone} is a sentence-transformers checkpoint trained with mean pooling" in caplog.text
    caplog.clear()
    load_run_data(tiny_config(backbone, question_files, tmp_path / "mean", pooling="mean"))
    assert "pooling" not in caplog.text
