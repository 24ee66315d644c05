"""The attention switch: disentangled-flash computes the same logits and gradients as DeBERTa's own
attention, keeps parameter names (optimizer groups, checkpoints, exports), honours gradient
checkpointing, and refuses what it cannot run with a clear error. On CPU the library runs its exact
PyTorch backend, which exercises the same wrapper as the Triton kernels on CUDA."""

import sys

import pytest
import torch
from transformers import AutoModelForMultipleChoice

from mcq.cli import main_guard
from mcq.core.attention import flash_backend, use_attention
from mcq.core.model import export_untrained, layer_groups
from mcq.errors import AttentionError, ConfigError
from mcq.infer import cli as infer_cli
from mcq.train.config import TrainConfig
from mcq.train.phases import Phase, freeze_for

pytest.importorskip("disentangled_flash")
CPU = torch.device("cpu")


def pair(tiny_deberta, **config):
    """The same randomly headed model twice: eager attention, and disentangled-flash."""
    torch.manual_seed(0)
    eager = AutoModelForMultipleChoice.from_pretrained(tiny_deberta, **config).eval()
    torch.manual_seed(0)
    flash = AutoModelForMultipleChoice.from_pretrained(tiny_deberta, **config).eval()
    assert use_attention(flash, "disentangled-flash", CPU) == "torch"
    return eager, flash


def padded_batch(vocab: int, seed: int = 0) -> dict:
    """3 questions x 5 options x 40 tokens, with rows padded at different lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 5, 40), generator=g)
    lengths = torch.randint(6, 41, (3, 5), generator=g)
    mask = (torch.arange(40)[None, None, :] < lengths[..., None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask, "labels": torch.tensor([0, 3, 4])}


def test_same_logits_and_parameter_names_as_eager(tiny_deberta):
    eager, flash = pair(tiny_deberta)
    assert type(flash.deberta.encoder).__name__ == "DebertaV2OptimizedEncoder"
    assert type(eager.deberta.encoder).__name__ == "DebertaV2Encoder"
    assert list(flash.state_dict()) == list(eager.state_dict())
    assert layer_groups(flash) == layer_groups(eager)
    batch = padded_batch(eager.config.vocab_size)
    with torch.inference_mode():
        a = eager(**batch).logits
        b = flash(**batch).logits
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[0], a[1])  # the comparison is not between constants


def test_same_gradients_as_eager_with_frozen_word_embeddings(tiny_deberta):
    eager, flash = pair(tiny_deberta)
    batch = padded_batch(eager.config.vocab_size, seed=1)
    for model in (eager, flash):
        freeze_for(model, Phase.full(1e-3, freeze_word_embeddings=True))
        model(**batch).loss.backward()
    grads = {n: p.grad for n, p in flash.named_parameters() if p.requires_grad}
    assert (
        "deberta.encoder.rel_embeddings.weight" in grads
        and "deberta.encoder.layer.0.attention.self.query_proj.weight" in grads
    )
    for name, p in eager.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
        else:
            assert dict(flash.named_parameters())[name].grad is None


def test_gradient_checkpointing_recomputes_attention_and_keeps_gradients(tiny_deberta):
    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # same outputs in train mode
    _, plain = pair(tiny_deberta, **no_dropout)
    _, checkpointed = pair(tiny_deberta, **no_dropout)
    checkpointed.activation_checkpointing_enable()
    calls = []
    checkpointed.deberta.encoder.layer[0].attention.self.register_forward_hook(lambda *a: calls.append(1))
    batch = padded_batch(plain.config.vocab_size, seed=2)
    for model in (plain, checkpointed):
        model.train()(**batch).loss.backward()
    assert len(calls) == 2, "layer 0 attention should run once forward and once more in backward"
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_bad_choices_are_clear_errors(tiny_bert, tiny_deberta, monkeypatch):
    with pytest.raises(ConfigError, match="attention: 'sdpa' is not one of eager, disentangled-flash"):
        TrainConfig(attention="sdpa")
    bert = AutoModelForMultipleChoice.from_pretrained(tiny_bert)
    with pytest.raises(AttentionError, match="needs a DeBERTa-v2/v3 backbone, this model is 'bert'"):
        use_attention(bert, "disentangled-flash", CPU)
    assert use_attention(bert, "eager", CPU) == "eager"
    monkeypatch.setitem(sys.modules, "disentangled_flash", None)  # as if not installed
    model = AutoModelForMultipleChoice.from_pretrained(tiny_deberta)
    with pytest.raises(AttentionError, match="pip install disentangled-flash"):
        use_attention(model, "disentangled-flash", CPU)
    assert flash_backend(torch.device("cuda", 1)) == "triton" and flash_backend(CPU) == "torch"


def test_infer_cli_refuses_flash_for_a_bert_model_in_one_line(tiny_bert, question_files, tmp_path, capsys):
    folder = export_untrained(str(tiny_bert), tmp_path / "bert", max_length=48)
    capsys.readouterr()  # the export's own loading output
    out = tmp_path / "out" / "submission.csv"
    argv = [
        "--models",
        str(folder),
        "--test",
        str(question_files["test"]),
        "--out",
        str(out),
        "--attention",
        "disentangled-flash",
    ]
    rc = main_guard(lambda: infer_cli.main(argv))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(
        f"error: attention: disentangled-flash needs a DeBERTa-v2/v3 backbone, {folder} is 'bert'"
    )
    assert "Traceback" not in err and "Loading weights" not in err  # refused before any model loads
    assert not out.exists()
