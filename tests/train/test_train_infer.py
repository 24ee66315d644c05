"""Training and inference meet: the attention switch in training, and inference reproducing the report."""

import numpy as np
import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForMultipleChoice

from mcq.infer import cli as infer_cli
from mcq.infer.config import InferConfig
from mcq.infer.run import run_inference
from mcq.train.run import run_training


def test_infer_reproduces_the_training_report(trained_run, tmp_path):
    """The ensemble MAP@3 that training reports is what infer.py gets from the exported folders."""
    cfg, report = trained_run
    result = run_inference(
        InferConfig(models=[f"{cfg.output_dir}/models"], test=cfg.valid, out=tmp_path / "sub" / "submission.csv")
    )
    assert result.map3["ensemble"] == pytest.approx(report["ensemble_valid_map3"], abs=1e-4)
    for seed in report["seeds"]:
        assert result.map3[f"seed{seed['seed']}"] == pytest.approx(seed["valid_map3"], abs=1e-4)


def test_trained_with_flash_exports_a_plain_model_and_infers_the_same(tiny_deberta, question_files, tmp_path, capsys):
    cfg = tiny_config(
        tiny_deberta, question_files, tmp_path / "run", seeds=[0], max_steps=3, attention="disentangled-flash"
    )
    report = run_training(cfg)
    folder = tmp_path / "run" / "models" / "seed0"
    # the exported folder is an ordinary transformers model: it loads with eager attention
    model = AutoModelForMultipleChoice.from_pretrained(folder)
    assert type(model.deberta.encoder).__name__ == "DebertaV2Encoder"
    before = AutoModelForMultipleChoice.from_pretrained(tiny_deberta).state_dict()
    name = "deberta.encoder.layer.0.attention.self.query_proj.weight"
    assert not torch.equal(before[name], model.state_dict()[name]), "phase 2 did not train through the flash encoder"
    # inference with either attention gives the logits training scored
    saved = np.load(tmp_path / "run" / "seed0" / "valid_logits.npy")
    for attention in ("eager", "disentangled-flash"):
        out = tmp_path / attention / "submission.csv"
        assert (
            infer_cli.main(
                [
                    "--models",
                    str(folder),
                    "--test",
                    str(question_files["valid"]),
                    "--out",
                    str(out),
                    "--attention",
                    attention,
                ]
            )
            == 0
        )
        np.testing.assert_allclose(np.load(out.parent / "logits_seed0.npy"), saved, rtol=1e-4, atol=1e-5)
    printed = capsys.readouterr().out
    assert printed.count(f"MAP@3 seed0: {report['seeds'][0]['valid_map3']:.4f}") == 2
