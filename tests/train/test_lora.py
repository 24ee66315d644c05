"""LoRA (issue #12) on the tiny backbones: per-layer groups of the adapters, the two phases, the merge, an end-to-end
run whose export is a plain model, resume, and the settings' checks."""

import dataclasses
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_config, train_killed_at
from safetensors import safe_open
from transformers import AutoModelForMultipleChoice, AutoTokenizer

pytest.importorskip("peft")

from mcq.core.data import read_questions  # noqa: E402
from mcq.core.export import META_FILE  # noqa: E402
from mcq.core.features import MultipleChoiceCollator, encode  # noqa: E402
from mcq.core.model import export_untrained, layer_groups, load_multiple_choice  # noqa: E402
from mcq.core.predict import inspect_models, models_logits  # noqa: E402
from mcq.errors import ConfigError  # noqa: E402
from mcq.train import lora  # noqa: E402
from mcq.train.config import TrainConfig, resume_differences  # noqa: E402
from mcq.train.lr import LayerRule  # noqa: E402
from mcq.train.optim import param_groups  # noqa: E402
from mcq.train.phases import Phase, freeze_for, head_state  # noqa: E402
from mcq.train.run import run_training  # noqa: E402

RULE = LayerRule("cosine", 0.1, 2.6)


def lora_cfg(**kw) -> TrainConfig:
    return TrainConfig(peft="lora", lora_r=4, lora_alpha=8, **kw)


def wrapped(folder: Path, **kw):
    torch.manual_seed(0)
    return lora.wrap_lora(load_multiple_choice(str(folder)), lora_cfg(**kw))


# what the tests ask of it (freezing, groups, the head) needs no settings
TUNING = lora.LoraTuning(None)  # type: ignore[arg-type]  # deliberately no TrainConfig


def batch(folder: Path, questions: Path, n: int = 6) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    features = encode(read_questions(questions, require_answer=True).head(n), tokenizer, 48)
    out = MultipleChoiceCollator(tokenizer)([features[i] for i in range(len(features))])
    return {k: v for k, v in out.items() if k != "labels"}


def logits(model, inputs: dict) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(**inputs).logits.numpy()


def perturb_adapters(model) -> None:
    """lora_B starts at zero (an adapter is a no-op until trained); make every adapter change its layer."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


@pytest.mark.parametrize("backbone", ["tiny_deberta", "tiny_bert"])
def test_adapters_of_layer_i_take_the_factor_of_layer_i(backbone, request):
    folder = request.getfixturevalue(backbone)
    model = wrapped(folder)
    freeze_for(model, Phase.full(1e-3, RULE), TUNING)
    groups = param_groups(model, 1e-3, RULE, 0.01, TUNING.layer_groups(model))
    factors = RULE.factors(len(layer_groups(model.get_base_model())))  # embeddings, layer.0, layer.1, head
    grouped = [n for g in groups for n in g["param_names"]]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert sorted(grouped) == sorted(trainable) and len(grouped) == len(set(grouped))  # each exactly once
    params = dict(model.named_parameters())
    for g in groups:
        for name in g["param_names"]:
            assert params[name].requires_grad, f"{name} is frozen but in a group"
            if ".lora_" in name:
                layer = int(name.split("encoder.layer.")[1].split(".")[0])
                assert g["name"].removesuffix(".no_decay") == f"layer.{layer}", name
                assert g["lr"] == pytest.approx(1e-3 * factors[layer + 1]), name
            else:
                assert ".modules_to_save.default." in name, f"{name}: a base weight is trained"
                assert g["name"].startswith("head") and g["lr"] == pytest.approx(1e-3 * factors[-1])
    head = {n for g in groups if g["name"].startswith("head") for n in g["param_names"]}
    assert {n.split(".modules_to_save.")[0].removeprefix("base_model.model.") for n in head} == set(
        lora.head_modules(load_multiple_choice(str(folder)))
    )  # classifier and pooler
    assert not any(g["name"].startswith("embeddings") for g in groups)  # word embeddings and all base weights frozen
    assert {n for n in trainable if ".lora_" in n} and all(
        ".lora_" in n or ".modules_to_save." in n for n in trainable
    )


def test_a_trainable_parameter_outside_every_group_is_caught(tiny_deberta):
    model = wrapped(tiny_deberta)
    freeze_for(model, Phase.full(1e-3, RULE), TUNING)
    model.register_parameter("stray", torch.nn.Parameter(torch.zeros(1)))  # in no layer group
    with pytest.raises(AssertionError, match="stray"):
        param_groups(model, 1e-3, RULE, 0.01, TUNING.layer_groups(model))


def test_phase_1_trains_only_the_head_copies(tiny_deberta, question_files):
    model = wrapped(tiny_deberta)
    freeze_for(model, Phase.head(1e-2), TUNING)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".modules_to_save.default." in n for n in trainable)
    assert {n.split(".")[2] for n in trainable} == {"classifier", "pooler"}
    groups = param_groups(model, 1e-2, LayerRule(), 0.01, TUNING.layer_groups(model))
    assert {g["name"].removesuffix(".no_decay") for g in groups} == {"head"}
    inputs = batch(tiny_deberta, question_files["train"])
    model.train()(**inputs, labels=torch.zeros(len(inputs["input_ids"]), dtype=torch.long)).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    assert set(head_state(model, TUNING)) == trainable  # what the head file keeps (and a resume loads back)


def test_merged_model_gives_the_adapted_logits_with_plain_names(tiny_deberta, question_files):
    model = wrapped(tiny_deberta)
    perturb_adapters(model)
    inputs = batch(tiny_deberta, question_files["valid"])
    before = logits(model, inputs)
    plain = logits(load_multiple_choice(str(tiny_deberta)), inputs)
    assert np.abs(before - plain).max() > 1e-3, "the perturbed adapters should change the logits"
    merged = lora.merge_for_export(model)
    after = logits(merged, inputs)
    print(f"max |merged - unmerged| = {np.abs(after - before).max():.3g}")
    np.testing.assert_allclose(after, before, atol=1e-5, rtol=0)
    assert type(merged).__name__ == "DebertaV2ForMultipleChoice"
    assert set(merged.state_dict()) == set(AutoModelForMultipleChoice.from_pretrained(tiny_deberta).state_dict())


def test_bert_gets_bert_targets_and_an_unknown_type_needs_them(tiny_bert):
    model = wrapped(tiny_bert)
    adapted = {n.split(".lora_A.")[0].rsplit(".", 1)[1] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert adapted == {"query", "key", "value", "dense"}
    assert lora.head_modules(load_multiple_choice(str(tiny_bert))) == ["bert.pooler.dense", "classifier"]
    assert lora.target_modules(lora_cfg(), "bert") == ["query", "key", "value", "dense"]
    assert lora.target_modules(lora_cfg(), "deberta-v2") == ["query_proj", "key_proj", "value_proj", "dense"]
    with pytest.raises(ConfigError, match="lora_target_modules"):
        lora.target_modules(lora_cfg(), "gpt2")
    assert lora.target_modules(lora_cfg(lora_target_modules=["c_attn"]), "gpt2") == ["c_attn"]


@pytest.mark.parametrize(
    "values, needle",
    [
        ({"lora_r": 0}, "lora_r: must be positive"),
        ({"lora_alpha": -1}, "lora_alpha: must be positive"),
        ({"lora_dropout": 1.0}, "lora_dropout: must be in"),
        ({"peft": "qlora"}, "peft: 'qlora' is not one of none, lora"),
        ({"peft": "lora", "attention": "disentangled-flash"}, "--attention eager"),
    ],
)
def test_bad_lora_settings_are_config_errors(values, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig(**values)


def test_lora_without_peft_says_how_to_install_it(tiny_deberta, monkeypatch):
    monkeypatch.setattr(lora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'mcq\[lora\]'"):
        lora.check_lora(lora_cfg(), str(tiny_deberta))
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now fails
    with pytest.raises(ConfigError, match=r"pip install 'mcq\[lora\]'"):
        lora.wrap_lora(load_multiple_choice(str(tiny_deberta)), lora_cfg())


def test_lora_settings_are_not_resumable_and_older_runs_still_resume():
    cfg = TrainConfig()
    older = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "peft" and not k.startswith("lora_")}
    assert resume_differences(older, cfg) == []  # a run from before LoRA existed trained with peft none
    assert resume_differences(older, dataclasses.replace(cfg, peft="lora")) == ["peft: 'none' -> 'lora'"]
    stored = dataclasses.asdict(dataclasses.replace(cfg, peft="lora"))
    assert resume_differences(stored, dataclasses.replace(cfg, peft="lora", lora_r=16)) == ["lora_r: 8 -> 16"]


@pytest.fixture(scope="module")
def lora_run(tiny_deberta, tmp_path_factory):
    """One LoRA seed of the tiny DeBERTa; the adapted model's own validation logits are kept just before the merge."""
    from conftest import write_questions

    folder = tmp_path_factory.mktemp("lora-run")
    files = {
        "train": write_questions(folder / "train.csv", 24, seed=1),
        "valid": write_questions(folder / "valid.csv", 12, seed=2),
    }
    cfg = tiny_config(
        tiny_deberta, files, folder / "run", seeds=[0], peft="lora", lora_r=4, lora_alpha=8, lr=2e-2, head_steps=2
    )
    seen: dict[str, Any] = {}
    real_merge = lora.merge_for_export

    def merge_after_scoring(model):
        seen["model_type"] = type(model).__name__
        seen["logits"] = logits(model, batch(tiny_deberta, files["valid"], n=12))
        return real_merge(model)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lora, "merge_for_export", merge_after_scoring)
        report = run_training(cfg)
    return cfg, report, seen


def test_lora_run_exports_a_plain_model_that_infers_the_adapted_logits(lora_run, tiny_deberta, tmp_path):
    cfg, report, seen = lora_run
    out = Path(cfg.output_dir)
    export = out / "models" / "seed0"
    assert seen["model_type"] == "PeftModel"
    plain = export_untrained(tiny_deberta, tmp_path / "plain", max_length=48)
    with safe_open(export / "model.safetensors", "pt") as f, safe_open(plain / "model.safetensors", "pt") as g:
        assert set(f.keys()) == set(g.keys())
        assert not [k for k in f.keys() if "lora" in k or "modules_to_save" in k or "original_module" in k]  # noqa: SIM118
        word = "deberta.embeddings.word_embeddings.weight"
        assert torch.equal(f.get_tensor(word), g.get_tensor(word))  # frozen under LoRA
        assert torch.equal(
            f.get_tensor("deberta.encoder.LayerNorm.weight"), g.get_tensor("deberta.encoder.LayerNorm.weight")
        )
        query = "deberta.encoder.layer.0.attention.self.query_proj.weight"
        assert not torch.equal(f.get_tensor(query), g.get_tensor(query)), "the adapter was not merged in"
    assert not {p.name for p in export.iterdir()} & {"adapter_config.json", "adapter_model.safetensors"}
    meta = json.loads((export / META_FILE).read_text())
    assert meta["peft"] == {
        "method": "lora",
        "r": 4,
        "alpha": 8,
        "dropout": 0.1,
        "merged": True,
        "target_modules": ["query_proj", "key_proj", "value_proj", "dense"],
    }
    # the inference path on the exported folder gives the adapted (unmerged) model's logits, which were saved
    valid = read_questions(cfg.valid, require_answer=True)
    [inferred] = models_logits(inspect_models([export]), valid, devices=[torch.device("cpu")])
    np.testing.assert_allclose(inferred, np.load(out / "seed0" / "valid_logits.npy"), atol=1e-5, rtol=0)
    np.testing.assert_allclose(inferred, seen["logits"], atol=1e-5, rtol=0)
    # the report counts the adapters and the head's copy as trainable, the backbone + head + adapters as total
    seed = report["seeds"][0]
    groups = {g["name"].removesuffix(".no_decay") for g in seed["groups"]}
    assert groups == {"layer.0", "layer.1", "head"}
    assert seed["trainable_params"] == sum(g["params"] for g in seed["groups"])
    n_plain = sum(p.numel() for p in AutoModelForMultipleChoice.from_pretrained(tiny_deberta).parameters())
    n_adapters = seed["trainable_params"] - sum(g["params"] for g in seed["groups"] if g["name"].startswith("head"))
    assert seed["total_params"] == n_plain + n_adapters
    assert f"{seed['trainable_params']:,} / {seed['total_params']:,}" in (out / "report.md").read_text()
    head = out / "seed0" / "head.safetensors"
    with safe_open(head, "pt") as f:
        assert f.keys() and all(".modules_to_save.default." in k for k in f.keys())  # noqa: SIM118


def test_a_lora_run_resumes_with_its_saved_head(lora_run, tmp_path, caplog):
    cfg, _, _ = lora_run
    out = tmp_path / "run"
    shutil.copytree(cfg.output_dir, out)
    cfg = dataclasses.replace(cfg, output_dir=str(out))
    shutil.rmtree(out / "models" / "seed0")
    caplog.set_level(logging.INFO)
    report = run_training(cfg, resume=True)
    assert "head loaded from" in caplog.text
    assert not report["seeds"][0].get("skipped")
    again = json.loads((out / "models" / "seed0" / META_FILE).read_text())
    assert again["peft"]["merged"] is True
    np.testing.assert_allclose(
        np.load(out / "seed0" / "valid_logits.npy"),
        np.load(Path(lora_run[0].output_dir) / "seed0" / "valid_logits.npy"),
        atol=1e-5,
        rtol=0,
    )


def test_a_killed_lora_run_resumes_from_its_adapter_checkpoint(
    tiny_deberta, question_files, tmp_path, monkeypatch, caplog
):
    cfg = tiny_config(
        tiny_deberta, question_files, tmp_path / "run", seeds=[0], peft="lora", lora_r=4, save_steps=3, epochs=2
    )
    train_killed_at(cfg, 2 + 5, monkeypatch)  # 2 head steps, then die in phase 2 after checkpoint-3
    assert (tmp_path / "run" / "seed0" / "phase2" / "checkpoint-3" / "adapter_model.safetensors").is_file()
    caplog.set_level(logging.INFO)
    report = run_training(cfg, resume=True)
    assert "checkpoint-3" in caplog.text and "head loaded from" in caplog.text
    assert report["seeds"][0]["valid_map3"] is not None


def test_gradient_checkpointing_still_trains_the_adapters_of_every_layer(tiny_deberta, question_files, tmp_path):
    """Every base weight frozen: with reentrant checkpointing no gradient would reach the adapters."""
    cfg = tiny_config(
        tiny_deberta,
        question_files,
        tmp_path / "gc",
        seeds=[0],
        head_steps=0,
        max_steps=3,
        gradient_checkpointing=True,
        peft="lora",
    )
    run_training(cfg)
    before = AutoModelForMultipleChoice.from_pretrained(tiny_deberta).state_dict()
    after = AutoModelForMultipleChoice.from_pretrained(tmp_path / "gc" / "models" / "seed0").state_dict()
    for name in (
        "deberta.encoder.layer.0.attention.self.query_proj.weight",
        "deberta.encoder.layer.1.output.dense.weight",
    ):
        assert not torch.equal(before[name], after[name]), f"{name}: its adapter did not train under checkpointing"
