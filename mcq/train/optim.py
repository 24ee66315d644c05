"""AdamW with one parameter group per (layer group, decay/no-decay), built from the model itself."""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import get_parameter_names

from mcq.core.model import layer_groups
from mcq.train.lr import LayerRule


def decay_parameter_names(model: torch.nn.Module) -> set[str]:
    """Parameters that get weight decay: everything but biases and norm weights (as Trainer decides)."""
    norms = [torch.nn.LayerNorm, torch.nn.modules.normalization.RMSNorm]
    names = get_parameter_names(model, norms, ["bias", "layernorm", "rmsnorm", "norm"])
    return set(names)


def param_groups(
    model: torch.nn.Module,
    top_lr: float,
    layers: LayerRule,
    weight_decay: float,
    groups: list[tuple[str, list[str]]] | None = None,
) -> list[dict]:
    """Optimizer groups of the trainable parameters only, each tagged with its layer-group name; every trainable
    parameter is in exactly one group. `groups` (the tuning's layer groups, bottom to top) default to the plain
    model's; a tuning with adapters places each adapter in the group of the layer it adapts."""
    groups = groups if groups is not None else layer_groups(model)  # type: ignore[arg-type]
    factors = layers.factors(len(groups))
    params = dict(model.named_parameters())
    with_decay = decay_parameter_names(model)
    out = []
    for (name, names), factor in zip(groups, factors):
        trainable = [n for n in names if params[n].requires_grad]  # frozen parameters are left out
        for suffix, wd, keep in (("", weight_decay, True), (".no_decay", 0.0, False)):
            chosen = [n for n in trainable if (n in with_decay) == keep]
            if chosen:
                out.append(
                    {
                        "name": name + suffix,
                        "params": [params[n] for n in chosen],
                        "param_names": chosen,
                        "lr": top_lr * factor,  # top_lr x the layer group's LayerRule factor (bottom to top)
                        "weight_decay": wd,
                    }
                )
    _check_each_trainable_once(params, out)
    return out


def _check_each_trainable_once(params: dict[str, torch.nn.Parameter], groups: list[dict]) -> None:
    """A trainable parameter in no group never trains, one in two trains twice: both are bugs."""
    grouped = [n for g in groups for n in g["param_names"]]
    trainable = {n for n, p in params.items() if p.requires_grad}
    if len(grouped) != len(set(grouped)) or set(grouped) != trainable:
        missing, twice = sorted(trainable - set(grouped)), sorted({n for n in grouped if grouped.count(n) > 1})
        raise AssertionError(f"optimizer groups: trainable parameters in no group {missing[:5]}, twice {twice[:5]}")


def build_optimizer(groups: list[dict], eps: float) -> torch.optim.AdamW:
    """AdamW over prepared groups; eps 1e-6 as DeBERTa was trained (1e-8 has gone NaN in fp16)."""
    if not groups:
        raise ValueError("no trainable parameters: check the freezing settings")
    return torch.optim.AdamW(groups, lr=groups[-1]["lr"], eps=eps, fused=False)
