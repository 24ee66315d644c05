"""python -m mcq.ablate on the tiny DeBERTa: variants, the tables, resume, and the errors."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_config, write_questions

from mcq.ablate.cli import main
from mcq.ablate.variants import BUILTIN, FIXED, Variant, check_variant, choose, read_variants, variant_config
from mcq.errors import ConfigError
from mcq.train.config import TrainConfig


@pytest.fixture(scope="module")
def base_yaml(tiny_deberta, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ablate")
    files = {
        "train": write_questions(folder / "train.csv", 16, seed=1),
        "valid": write_questions(folder / "valid.csv", 12, seed=2),
    }
    cfg = tiny_config(
        tiny_deberta, files, folder / "base", seeds=[0, 1], layer_lr_shape="cosine", eval_per_epoch=False
    )
    path = folder / "base.yaml"
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ablation(base_yaml):
    """An ablation killed after its first variant (only `full` asked), then run again with two more."""
    root = base_yaml.parent / "abl"
    assert main(["--config", str(base_yaml), "--variants", "full", "--out", str(root)]) == 0
    first = json.loads((root / "ablation.json").read_text())
    defined = base_yaml.parent / "mine.yaml"
    defined.write_text("half-lr:\n  about: the recipe at half the LR\n  lr: 5e-4\n", encoding="utf-8")
    args = [
        "--config",
        str(base_yaml),
        "--variants",
        "full,recipe,half-lr,mean-lr",
        "--define",
        str(defined),
        "--out",
        str(root),
    ]
    assert main(args) == 0
    return root, first, json.loads((root / "ablation.json").read_text())


def test_every_variant_trains_the_same_seeds_in_its_own_folder_with_its_overrides(ablation):
    root, _, table = ablation
    assert [v["name"] for v in table["variants"]] == ["full", "recipe", "half-lr", "mean-lr"]
    for v in table["variants"]:
        report = json.loads((root / v["name"] / "report.json").read_text())
        assert sorted(v["scores"]) == ["0", "1"]
        assert v["scores"] == {str(s["seed"]): s["valid_map3"] for s in report["seeds"]}
        assert v["ensemble"] == pytest.approx(report["ensemble_valid_map3"])
        assert report["n_train"] == 16 and report["n_valid"] == 12
    full, recipe, half, mean = table["variants"]
    assert mean["lr"]["param_weighted_mean"] == pytest.approx(1e-3)  # layer_lr_norm: mean
    assert mean["lr"]["top"] > 1e-3 and mean["lr"]["lowest"] == pytest.approx(0.1 * mean["lr"]["top"])
    assert full["trainable_params"] > recipe["trainable_params"]  # the word embeddings train in `full` only
    assert full["lr"]["lowest"] == pytest.approx(full["lr"]["top"])  # constant LRs
    assert recipe["lr"]["lowest"] == pytest.approx(0.1 * recipe["lr"]["top"])  # cosine from layer_lr_min 0.1
    assert recipe["lr"]["param_weighted_mean"] < recipe["lr"]["top"]
    assert half["lr"]["top"] == pytest.approx(5e-4) and recipe["lr"]["top"] == pytest.approx(1e-3)
    assert json.loads((root / "full" / "run_config.json").read_text())["freeze_word_embeddings"] is False
    assert all(v["wall_s"] > 0 for v in table["variants"])


def test_pairs_hold_the_per_seed_differences_and_the_ensemble_bootstrap(ablation):
    _, _, table = ablation
    assert [(p["a"], p["b"]) for p in table["pairs"]][:3] == [
        ("full", "recipe"),
        ("full", "half-lr"),
        ("full", "mean-lr"),
    ]
    assert len(table["pairs"]) == 6
    by_name = {v["name"]: v for v in table["variants"]}
    for p in table["pairs"]:
        a, b = by_name[p["a"]]["scores"], by_name[p["b"]]["scores"]
        assert p["diffs"] == pytest.approx([b[s] - a[s] for s in ("0", "1")], abs=1e-12)
        assert p["mean"] == pytest.approx(np.mean(p["diffs"]))
        ens = p["ensemble"]
        assert ens["mean"] == pytest.approx(by_name[p["b"]]["ensemble"] - by_name[p["a"]]["ensemble"], abs=1e-9)
        assert ens["low"] <= ens["mean"] <= ens["high"]


def test_tables_and_plot_are_written(ablation):
    root, _, _ = ablation
    md = (root / "ablation.md").read_text()
    assert "| full |" in md and "| half-lr |" in md and "recipe − full" in md
    assert "the recipe at half the LR" in md
    assert (root / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_a_resumed_ablation_keeps_the_finished_variant(ablation):
    _, first, table = ablation
    assert [v["name"] for v in first["variants"]] == ["full"]
    assert table["variants"][0]["scores"] == first["variants"][0]["scores"]
    report = json.loads((Path(table["variants"][0]["run"]) / "report.json").read_text())
    assert all(s.get("skipped") for s in report["seeds"])  # not retrained the second time


def test_a_changed_base_config_is_refused_naming_the_variant_and_setting(ablation, base_yaml, tmp_path):
    root, _, _ = ablation
    changed = yaml.safe_load(base_yaml.read_text())
    changed["weight_decay"] = 0.5
    other = tmp_path / "changed.yaml"
    other.write_text(yaml.safe_dump(changed), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"variant 'full'.*weight_decay: 0.01 -> 0.5"):
        main(["--config", str(other), "--variants", "full", "--out", str(root)])


def test_variants_cannot_change_data_seeds_or_steps_and_keys_are_checked(tmp_path):
    for key in ("seeds", "max_train", "epochs", "valid"):
        assert key in FIXED
        with pytest.raises(ConfigError, match="every variant shares"):
            check_variant(Variant("v", {key: 1}))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lr_rate'\]"):
        check_variant(Variant("v", {"lr_rate": 1}))
    with pytest.raises(ConfigError, match="variant name"):
        check_variant(Variant("../x", {}))
    with pytest.raises(ConfigError, match=r"unknown variant\(s\) \['nope'\]"):
        choose(["full", "nope"], {})
    with pytest.raises(ConfigError, match="listed twice"):
        choose(["full", "full"], {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("x:\n  seeds: [5]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{bad}: variant 'x' sets \['seeds'\]"):
        read_variants(bad)
    (tmp_path / "list.yaml").write_text("- a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="at the top level"):
        read_variants(tmp_path / "list.yaml")


def test_variant_overrides_are_typed_and_validated(tmp_path):
    base = TrainConfig(train=["t.csv"], lr=1e-4, layer_lr_shape="cosine")
    (tmp_path / "v.yaml").write_text("a:\n  lr: 2e-5\n  layer_lr_min: 0.5\nb:\n  lr: null\n", encoding="utf-8")
    defined = read_variants(tmp_path / "v.yaml")
    a = variant_config(base, defined["a"], tmp_path)
    assert a.lr == 2e-5 and isinstance(a.lr, float) and a.layer_lr_min == 0.5  # YAML reads 2e-5 as a string
    assert a.output_dir == str(tmp_path / "a") and a.train == ["t.csv"]
    assert variant_config(base, defined["b"], tmp_path).lr is None  # back to the derived LR
    full = variant_config(base, BUILTIN["full"], tmp_path)
    assert (full.freeze_word_embeddings, full.layer_lr_shape) == (False, "constant")
    assert variant_config(base, BUILTIN["no-warmup"], tmp_path).head_steps == 0
    with pytest.raises(ConfigError, match="variant 'w'.*layer_lr_shape"):
        variant_config(base, Variant("w", {"layer_lr_shape": "zigzag"}), tmp_path)


def test_list_prints_builtins_and_definitions(tmp_path, capsys):
    (tmp_path / "v.yaml").write_text("mine:\n  about: a test\n  weight_decay: 0.0\n", encoding="utf-8")
    assert main(["--list", "--define", str(tmp_path / "v.yaml")]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BUILTIN) and "mine" in out and "a test" in out


def test_an_ablation_without_validation_file_is_refused(tiny_deberta, tmp_path):
    files = {"train": write_questions(tmp_path / "t.csv", 8, seed=1), "valid": None}
    cfg = tiny_config(tiny_deberta, files, tmp_path / "run", valid=None)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg)), encoding="utf-8")
    with pytest.raises(ConfigError, match="set `valid:`"):
        main(["--config", str(path), "--variants", "full"])


def test_the_benchmarks_read_an_ablation_folder(ablation, base_yaml, capsys):
    from bench import ablation_why, tta_blend

    root, _, table = ablation
    assert ablation_why.main([str(root), "--json", str(root / "why.json")]) == 0
    why = json.loads((root / "why.json").read_text())
    assert why["word embeddings"]["moved"]["recipe"] == [0.0, 0.0]  # frozen in the recipe
    assert min(why["word embeddings"]["moved"]["full"]) > 0  # trained in `full`
    assert why["layer.0"]["recipe_factor"] < why["layer.1"]["recipe_factor"]
    valid = table["base_config"]["valid"]
    args = [
        "--models",
        str(root / "recipe" / "models"),
        "--ablation",
        str(root),
        "--valid",
        valid,
        "--rotations",
        "1",
        "2",
        "--json",
        str(root / "tta.json"),
    ]
    assert tta_blend.main(args) == 0
    figures = json.loads((root / "tta.json").read_text())
    one, two = figures["tta"]
    # each (question, option) pair is scored on its own, so rotating the options changes no score
    assert two["map3"]["ensemble"] == pytest.approx(one["map3"]["ensemble"])
    assert one["map3"]["ensemble"] == pytest.approx(table["variants"][1]["ensemble"])
    assert len(figures["blends"]["all seeds of all variants"]["models"]) == 8


def test_no_variant_and_a_variant_named_like_an_output_file_are_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="--variants: no variant named"):
        main(["--variants", ",", "--train", "t.csv"])
    for name in ("ablation.md", "ablation.json", "ablation.png"):
        with pytest.raises(ConfigError, match="the ablation's own output"):
            check_variant(Variant(name, {}))
