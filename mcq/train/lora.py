"""LoRA (issue #12): low-rank adapters on the attention and feed-forward projections, wrapped with peft.

The backbone is wrapped right after it loads (before Trainer, so before DDP), the whole head (classifier
and pooler) trains as a full copy (`modules_to_save`), and the adapters are merged away before export,
so an exported folder is a plain model that inference and the Kaggle kernel load without peft.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, cast

from torch import nn
from transformers import PreTrainedModel

from mcq.core.model import from_folder_or_hub, layer_groups
from mcq.errors import ConfigError
from mcq.train.config import TrainConfig
from mcq.train.tuning import FullTuning

if TYPE_CHECKING:  # peft is imported only when a LoRA run starts
    from peft import PeftModel

    from mcq.train.phases import Phase

# The linear layers adapted when lora_target_modules is empty: attention query/key/value, the attention output
# and both feed-forward projections of every layer (peft matches these as the last part of a module's name).
DEFAULT_TARGETS = {
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
    "bert": ["query", "key", "value", "dense"],  # also MiniLM (model_type bert)
}
NEEDS_PEFT = "--peft lora needs peft: pip install 'mcq[lora]'"


def check_lora(cfg: TrainConfig, model_path: str) -> None:
    """--peft lora's ConfigErrors before any data or weights load: no peft, no target modules for the backbone."""
    if importlib.util.find_spec("peft") is None:
        raise ConfigError(NEEDS_PEFT)
    from transformers import AutoConfig

    target_modules(cfg, from_folder_or_hub(AutoConfig.from_pretrained, model_path).model_type)


def target_modules(cfg: TrainConfig, model_type: str) -> list[str]:
    """The module names that get adapters: the configured ones, else the backbone's defaults."""
    if cfg.lora_target_modules:
        return list(cfg.lora_target_modules)
    if model_type not in DEFAULT_TARGETS:
        raise ConfigError(
            f"lora_target_modules: no default for model type '{model_type}' (known: {', '.join(DEFAULT_TARGETS)}); "
            "set lora_target_modules (--lora-target-modules NAME ...) to the names of its linear layers, "
            "e.g. query key value dense"
        )
    return list(DEFAULT_TARGETS[model_type])


def head_modules(model: PreTrainedModel) -> list[str]:
    """The modules holding the head's parameters (classifier, and DeBERTa's or BERT's pooler): peft adds
    only `classifier` by itself, so the pooler would stay frozen at its random start without this."""
    return sorted({name.rsplit(".", 1)[0] for name in layer_groups(model)[-1][1]})


def wrap_lora(model: PreTrainedModel, cfg: TrainConfig) -> PeftModel:
    """The model wrapped in a peft LoRA model: adapters on the target modules, a trainable copy of the head,
    every base weight (word embeddings included) frozen."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ConfigError(NEEDS_PEFT) from err
    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=target_modules(cfg, model.config.model_type),
        modules_to_save=head_modules(model),
        # no task_type: peft has no multiple-choice one, and the plain PeftModel passes every input through
    )
    return get_peft_model(model, config)


def lora_layer_groups(model: PeftModel) -> list[tuple[str, list[str]]]:
    """`layer_groups` of the wrapped backbone under the wrapper's parameter names: an adapter sits in the
    group of the layer it adapts, the head's copies (and the frozen originals) in the head group."""
    base = cast(PreTrainedModel, model.get_base_model())  # the backbone, its modules now holding the adapters
    inner = {id(p): n for n, p in base.named_parameters()}
    outer = {inner[id(p)]: n for n, p in model.named_parameters() if id(p) in inner}
    return [(group, [outer[n] for n in names]) for group, names in layer_groups(base)]


def trained_names(model: PeftModel, head_only: bool) -> set[str]:
    """What a phase trains in a LoRA model: the head's copies, plus every adapter unless `head_only`."""
    adapter_prefix = cast(str, model.base_model.prefix)  # "lora_": peft's own test for an adapter parameter
    names = set()
    for name, _ in model.named_parameters():
        if ".modules_to_save." in name or (not head_only and adapter_prefix in name):
            names.add(name)
    return names


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters; for a LoRA model the frozen originals of the head copies are left out
    of the total (they are neither trained nor exported), so total = backbone + head + adapters."""
    params = [(n, p) for n, p in model.named_parameters() if ".original_module." not in n]
    return sum(p.numel() for _, p in params), sum(p.numel() for _, p in params if p.requires_grad)


def merge_for_export(model: PeftModel) -> PreTrainedModel:
    """The plain model with the adapters merged into their base weights and the trained head in place: the same
    parameter names as a model that never saw peft."""
    return model.merge_and_unload(safe_merge=True)  # safe_merge: refuse adapters that went NaN


def export_record(cfg: TrainConfig, model_type: str) -> dict:
    """What an exported folder records about its LoRA training."""
    return {
        "method": "lora",
        "r": cfg.lora_r,
        "alpha": cfg.lora_alpha,
        "dropout": cfg.lora_dropout,
        "target_modules": target_modules(cfg, model_type),
        "merged": True,
    }


class LoraTuning(FullTuning):
    """Phase 2 trains the adapters and the head's copy, every base weight (word embeddings included) frozen;
    the adapters are merged away before export."""

    name = "lora"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def check(self, model_path: str) -> None:
        check_lora(self.cfg, model_path)

    def wrap(self, model: nn.Module) -> nn.Module:
        return wrap_lora(cast(PreTrainedModel, model), self.cfg)  # before Trainer, and so before DDP wraps it

    def layer_groups(self, model: nn.Module) -> list[tuple[str, list[str]]]:
        return lora_layer_groups(cast("PeftModel", model))

    def head_names(self, model: nn.Module) -> set[str]:
        return trained_names(cast("PeftModel", model), head_only=True)

    def trained_names(self, model: nn.Module, phase: Phase) -> set[str]:
        return trained_names(cast("PeftModel", model), head_only=phase.name == "head")

    def words_frozen(self, phase: Phase) -> bool:
        return True

    def counts(self, model: nn.Module) -> tuple[int, int]:
        return parameter_counts(model)

    def for_export(self, model: nn.Module) -> tuple[nn.Module, dict]:
        record = export_record(self.cfg, str(cast(PreTrainedModel, model).config.model_type))
        return merge_for_export(cast("PeftModel", model)), {"peft": record}
