"""Why a variant wins or loses: how far each layer group moved from the pretrained backbone, per variant.

Reads a finished `python -m mcq.ablate` folder: for each variant and seed, the exported model against the
backbone it started from, as the relative L2 change ||w_trained - w_pretrained|| / ||w_pretrained|| of each
layer group's backbone weights (the new head is left out: it has no pretrained value). Beside it, the LR
factor each group got and the group's share of the parameters.

    python bench/ablation_why.py runs/minilm-llmse-ablation [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mcq.core.model import layer_groups, load_multiple_choice, word_embedding_names  # noqa: E402
from mcq.packages import resolve_model_path  # noqa: E402
from mcq.train.lr import layer_lr_factors  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ablation", type=Path, help="the ablation folder (holds ablation.json)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    return p.parse_args(argv)


def movement(pretrained: dict[str, torch.Tensor], trained: dict[str, torch.Tensor], names: list[str]) -> float:
    """Relative L2 change of a set of weights (all of them flattened together)."""
    diff = sum(float((trained[n].float() - pretrained[n].float()).pow(2).sum()) for n in names)
    base = sum(float(pretrained[n].float().pow(2).sum()) for n in names)
    return (diff / base) ** 0.5 if base else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    table = json.loads((args.ablation / "ablation.json").read_text(encoding="utf-8"))
    cfg = table["base_config"]
    model = load_multiple_choice(resolve_model_path(cfg["model"]))
    pretrained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    groups = [(g, names) for g, names in layer_groups(model) if g != "head"]
    words = word_embedding_names(model)
    total = sum(p.numel() for p in model.parameters())
    factors = layer_lr_factors(len(groups) + 1, cfg["layer_lr_shape"], cfg["layer_lr_min"], cfg["layer_lr_decay"])
    params = dict(model.named_parameters())
    rows: dict[str, dict] = {}
    for (name, names), factor in zip(groups, factors):
        rest = [n for n in names if n not in words]
        rows[name] = {"recipe_factor": factor, "share": sum(params[n].numel() for n in rest) / total, "moved": {}}
        if len(rest) != len(names):
            rows["word embeddings"] = {
                "recipe_factor": factor,
                "share": sum(params[n].numel() for n in words) / total,
                "moved": {},
            }
    for v in table["variants"]:
        for seed in v["scores"]:
            trained = load_file(Path(v["run"]) / "models" / f"seed{seed}" / "model.safetensors")
            for name, names in groups:
                rest = [n for n in names if n not in words]
                rows[name]["moved"].setdefault(v["name"], []).append(movement(pretrained, trained, rest))
                if len(rest) != len(names):
                    wm = movement(pretrained, trained, sorted(words))
                    rows["word embeddings"]["moved"].setdefault(v["name"], []).append(wm)
    names = [v["name"] for v in table["variants"]]
    print(f"relative weight change from the pretrained backbone (mean over seeds), {cfg['model']}")
    print("| group | recipe LR factor | share of params | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for group, row in rows.items():
        moved = " | ".join(f"{np.mean(row['moved'][n]):.2e}" for n in names)
        print(f"| {group} | {row['recipe_factor']:.3f} | {row['share']:.1%} | {moved} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
