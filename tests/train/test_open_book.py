"""Open book end to end on the tiny DeBERTa: contexts retrieved once per run, recorded in each export,
made the same way by infer.py, refused when the index differs from the run's or the models'."""

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import sentences, tiny_config

from mcq.core.data import read_questions
from mcq.errors import ConfigError
from mcq.infer import cli as infer_cli
from mcq.retrieve.index import build_index
from mcq.retrieve.settings import IndexSettings, PassageSettings
from mcq.train.run import run_training


def write_corpus(path, n, seed):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "text"])
        for i, text in enumerate(sentences(n, seed=seed, length=30)):
            writer.writerow([f"d{i}", text.split()[0], text])
    return path


@pytest.fixture(scope="module")
def open_run(tiny_deberta, tmp_path_factory):
    from conftest import write_questions

    folder = tmp_path_factory.mktemp("open-book")
    files = {
        "train": write_questions(folder / "train.csv", 16, seed=1),
        "valid": write_questions(folder / "valid.csv", 8, seed=2),
    }
    build_index([write_corpus(folder / "corpus.csv", 40, seed=5)], folder / "index")
    cfg = tiny_config(
        tiny_deberta,
        files,
        folder / "run",
        seeds=[0],
        max_steps=2,
        head_steps=1,
        index=str(folder / "index"),
        retrieve_k=2,
        context_chars=300,
        max_length=64,
    )
    return folder, cfg, run_training(cfg)


def _infer(models, cfg, out, *extra: str) -> int:
    """infer.py on the run's validation questions."""
    return infer_cli.main(["--models", str(models), "--test", cfg.valid, "--out", str(out), *extra])


def _assert_scores_as_training(out_dir: Path, folder: Path) -> None:
    trained = np.load(folder / "run" / "seed0" / "valid_logits.npy")
    np.testing.assert_allclose(np.load(out_dir / "logits_seed0.npy"), trained, rtol=1e-4, atol=1e-5)


def test_training_retrieves_once_and_every_export_records_how(open_run):
    folder, cfg, report = open_run
    cached = json.loads((folder / "run" / "retrieval" / "train_contexts.json").read_text())
    assert len(cached["contexts"]) == 16 and all(cached["contexts"])
    assert all(len(c) <= 300 for c in cached["contexts"])
    assert (cached["k"], cached["max_chars"]) == (2, 300)
    meta = json.loads((folder / "run" / "models" / "seed0" / "mcq_model.json").read_text())
    manifest = json.loads((folder / "index" / "mcq_index.json").read_text())
    assert meta["retrieval"]["index_fingerprint"] == manifest["fingerprint"] == cached["index_fingerprint"]
    assert meta["retrieval"]["k"] == 2 and meta["retrieval"]["max_chars"] == 300
    assert report["seeds"][0]["valid_map3"] is not None


def test_infer_with_the_index_scores_what_training_scored(open_run, tmp_path):
    folder, cfg, report = open_run
    out = tmp_path / "submission.csv"
    assert _infer(f"{folder}/run/models", cfg, out, "--index", str(folder / "index")) == 0
    _assert_scores_as_training(tmp_path, folder)


def test_infer_can_raise_k_and_max_length_and_warns_when_closed_book(open_run, tmp_path, caplog):
    folder, cfg, _ = open_run
    args = ["--models", f"{folder}/run/models", "--test", cfg.valid]
    assert (
        infer_cli.main(
            [
                *args,
                "--out",
                str(tmp_path / "a" / "s.csv"),
                "--index",
                str(folder / "index"),
                "--k",
                "5",
                "--context-chars",
                "1500",
                "--max-length",
                "128",
            ]
        )
        == 0
    )
    longer = np.load(tmp_path / "a" / "logits_seed0.npy")
    assert not np.allclose(longer, np.load(folder / "run" / "seed0" / "valid_logits.npy"), atol=1e-5)
    with caplog.at_level(logging.WARNING):
        assert infer_cli.main([*args, "--out", str(tmp_path / "b" / "s.csv")]) == 0
    assert "trained with retrieved context" in caplog.text and "--index" in caplog.text


def test_infer_refuses_an_index_built_with_other_settings(open_run, tmp_path):
    folder, cfg, _ = open_run
    other = tmp_path / "other-index"
    build_index([folder / "corpus.csv"], other, IndexSettings(passages=PassageSettings(max_words=12, overlap_words=2)))
    with pytest.raises(
        ConfigError,
        match=r"built with passages.max_words 12 \(asked 120\); passages.overlap_words 2 "
        r"\(asked 20\), where 'asked' is what the models' context was made with",
    ):
        _infer(f"{folder}/run/models", cfg, tmp_path / "s.csv", "--index", str(other))


def test_models_exported_before_a_new_index_setting_accept_an_index_at_its_default(open_run, tmp_path):
    folder, cfg, _ = open_run
    models = tmp_path / "models"
    shutil.copytree(folder / "run" / "models", models)
    meta_file = models / "seed0" / "mcq_model.json"
    meta = json.loads(meta_file.read_text())
    assert meta["retrieval"]["index_settings"].pop("dense_weight") == 0.5  # as exported before the setting existed
    meta_file.write_text(json.dumps(meta))
    assert _infer(models, cfg, tmp_path / "s.csv", "--index", str(folder / "index")) == 0
    _assert_scores_as_training(tmp_path, folder)


def test_resume_reuses_the_contexts_and_refuses_another_index(open_run, tmp_path, caplog):
    import dataclasses

    folder, cfg, _ = open_run
    run = tmp_path / "run"
    shutil.copytree(folder / "run", run)
    moved = tmp_path / "moved-index"
    shutil.copytree(folder / "index", moved)  # the same index elsewhere: same fingerprint
    with caplog.at_level(logging.INFO):
        run_training(dataclasses.replace(cfg, output_dir=str(run), index=str(moved)), resume=True)
    assert "train contexts reused" in caplog.text
    other = tmp_path / "other-index"
    build_index([write_corpus(tmp_path / "c2.csv", 40, seed=9)], other)
    with pytest.raises(ConfigError, match="Resume with the index the run started with"):
        run_training(dataclasses.replace(cfg, output_dir=str(run), index=str(other)), resume=True)


def test_the_context_command_feeds_infer_without_an_index(open_run, tmp_path):
    """`mcq-retrieve context` writes the same context that infer.py --index makes."""
    from mcq.retrieve.cli import main as retrieve_main

    folder, cfg, _ = open_run
    with_context = tmp_path / "valid_ctx.csv"
    assert (
        retrieve_main(
            [
                "context",
                "--index",
                str(folder / "index"),
                "--questions",
                cfg.valid,
                "--out",
                str(with_context),
                "--k",
                "2",
                "--max-chars",
                "300",
            ]
        )
        == 0
    )
    cached = json.loads((folder / "run" / "retrieval" / "valid_contexts.json").read_text())
    assert read_questions(with_context).contexts == cached["contexts"]


def test_a_run_from_before_the_reader_settings_resumes_as_the_layout_it_used(tmp_path):
    """run_config.json of an older run has no input_layout: it read prompt [SEP] context / option with [CLS]."""
    import dataclasses

    from mcq.train.config import TrainConfig, resume_differences

    cfg = TrainConfig(train=["t.csv"])
    older = {
        k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("input_layout", "pooling", "context_select")
    }
    legacy = dataclasses.replace(cfg, input_layout="prompt-context", pooling="cls", context_select="none")
    assert resume_differences(older, legacy) == []
    assert resume_differences(older, dataclasses.replace(legacy, pooling="mean")) == ["pooling: 'cls' -> 'mean'"]


def test_context_source_picks_the_files_column_none_or_the_index(open_run, tmp_path):
    """none: closed book even when the files have context; file: the files' own column even with an index set."""
    import dataclasses

    from conftest import write_questions

    from mcq.train.context import retrieve_for_run
    from mcq.train.layout import RunLayout

    folder, cfg, _ = open_run
    gold = read_questions(write_questions(tmp_path / "gold.csv", 4, seed=7, context=True))
    layout = RunLayout.of(tmp_path / "run")
    closed, _, meta = retrieve_for_run(dataclasses.replace(cfg, context_source="none"), layout, gold, None)
    assert closed.contexts is None and meta is None
    own, _, meta = retrieve_for_run(dataclasses.replace(cfg, context_source="file"), layout, gold, None)
    assert own.contexts == gold.contexts and meta is None
    retrieved, _, meta = retrieve_for_run(cfg, layout, gold, None)
    assert retrieved.contexts != gold.contexts and meta is not None and meta["k"] == 2
    plain = read_questions(write_questions(tmp_path / "plain.csv", 4, seed=8))
    with pytest.raises(ConfigError, match="context_source file: .* has no context column"):
        retrieve_for_run(dataclasses.replace(cfg, context_source="file"), layout, plain, None)
    with pytest.raises(ConfigError, match="context_source"):
        dataclasses.replace(cfg, context_source="gold")
