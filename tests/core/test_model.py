"""Layer groups, freezing and optimizer groups: every trainable parameter in exactly one group."""

import pytest
import torch
from transformers import AutoModelForMultipleChoice, DebertaV2ForMultipleChoice

from mcq.core.arch import deberta_v3_large_config
from mcq.core.model import count_parameters, layer_groups, word_embedding_names
from mcq.train.lr import LayerRule
from mcq.train.optim import build_optimizer, decay_parameter_names, param_groups
from mcq.train.phases import Phase, freeze_for


@pytest.fixture(params=["tiny_deberta", "tiny_bert"])
def model(request):
    folder = request.getfixturevalue(request.param)
    return AutoModelForMultipleChoice.from_pretrained(folder)


def test_groups_cover_every_parameter_once_bottom_to_top(model):
    groups = layer_groups(model)
    names = [n for _, members in groups for n in members]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(names) == len(set(names))
    assert [g for g, _ in groups] == ["embeddings", "layer.0", "layer.1", "head"]
    assert any("classifier" in n for n in groups[-1][1])
    assert any("pooler" in n for n in groups[-1][1])


def test_deberta_shared_relative_position_parameters_are_placed_with_embeddings(tiny_deberta):
    model = AutoModelForMultipleChoice.from_pretrained(tiny_deberta)
    embeddings = dict(layer_groups(model))["embeddings"]
    assert "deberta.encoder.rel_embeddings.weight" in embeddings
    assert "deberta.encoder.LayerNorm.weight" in embeddings


def test_unknown_backbone_parameter_is_an_error(tiny_bert):
    model = AutoModelForMultipleChoice.from_pretrained(tiny_bert)
    model.bert.encoder.extra = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="encoder.extra"):
        layer_groups(model)


def test_phase_head_trains_only_the_head(model):
    freeze_for(model, Phase.head(1e-3))
    head = set(layer_groups(model)[-1][1])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == head


def test_phase_full_freezes_exactly_the_word_embeddings(model):
    freeze_for(model, Phase.full(1e-3, freeze_word_embeddings=True))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == word_embedding_names(model)
    assert len(frozen) == 1 and "word_embeddings" in next(iter(frozen))
    total, trainable = count_parameters(model)
    assert total - trainable == model.get_input_embeddings().weight.numel()
    freeze_for(model, Phase.full(1e-3, freeze_word_embeddings=False))
    assert count_parameters(model)[1] == total


@pytest.mark.parametrize("phase", ["head", "full"])
@pytest.mark.parametrize("shape", ["cosine", "geometric", "constant"])
def test_every_trainable_parameter_in_exactly_one_optimizer_group(model, phase, shape):
    freeze_for(model, Phase.head(1e-3) if phase == "head" else Phase.full(1e-3))
    groups = param_groups(model, 1e-3, LayerRule(shape, 0.1, 2.6), 0.01)
    optimizer = build_optimizer(groups, eps=1e-6)
    in_groups = [id(p) for g in optimizer.param_groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(in_groups) == sorted(trainable), "a trainable parameter is missing or a frozen one is present"
    assert len(in_groups) == len(set(in_groups))
    assert all(g["eps"] == 1e-6 for g in optimizer.param_groups)


def test_group_lrs_follow_the_shape_and_decay_skips_biases_and_norms(tiny_deberta):
    model = AutoModelForMultipleChoice.from_pretrained(tiny_deberta)
    freeze_for(model, Phase.full(1e-3))
    groups = {g["name"]: g for g in param_groups(model, 1e-3, LayerRule("cosine", 0.1, 2.6), 0.01)}
    # 4 groups: factors 0.1, 0.1 + 0.9 * 0.25, 0.1 + 0.9 * 0.75, 1.0
    assert groups["embeddings"]["lr"] == pytest.approx(1e-4)
    assert groups["layer.0"]["lr"] == pytest.approx(1e-3 * 0.325)
    assert groups["layer.1"]["lr"] == pytest.approx(1e-3 * 0.775)
    assert groups["head"]["lr"] == pytest.approx(1e-3)
    for g in groups.values():
        for name in g["param_names"]:
            is_bias_or_norm = name.endswith("bias") or "LayerNorm" in name
            assert (g["weight_decay"] == 0.0) == is_bias_or_norm, name
    assert "deberta.encoder.LayerNorm.weight" not in decay_parameter_names(model)


def test_deberta_v3_large_counts_match_the_recipe():
    """The published architecture (built on the meta device, no weights): ~435M total, ~304M without the word
    embeddings."""
    with torch.device("meta"):
        model = DebertaV2ForMultipleChoice(deberta_v3_large_config())
    freeze_for(model, Phase.full(1e-3, freeze_word_embeddings=True))
    total, trainable = count_parameters(model)
    assert 430e6 < total < 440e6
    assert 300e6 < trainable < 308e6
    assert total - trainable == 128100 * 1024
    assert [g for g, _ in layer_groups(model)][1:-1] == [f"layer.{i}" for i in range(24)]


def test_loading_names_the_new_head_and_warns_on_missing_backbone_weights(tiny_bert, tmp_path, caplog):
    import shutil

    from safetensors.torch import load_file, save_file

    from mcq.core.model import load_multiple_choice

    caplog.set_level("INFO", logger="mcq.core.model")
    load_multiple_choice(str(tiny_bert))
    assert "new head initialised randomly" in caplog.text and "classifier.weight" in caplog.text
    assert "backbone weight" not in caplog.text
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert, broken)
    state = load_file(broken / "model.safetensors")
    save_file(
        {k: v for k, v in state.items() if ".layer.1." not in k},
        broken / "model.safetensors",
        metadata={"format": "pt"},
    )
    caplog.clear()
    load_multiple_choice(str(broken))
    assert "backbone weight(s) were not in the checkpoint" in caplog.text and "layer.1" in caplog.text
