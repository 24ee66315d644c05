"""How a model reads a question with its context: the input layout, the sentences kept, the pooled token.

Recorded with every exported model (`mcq_model.json` "reader"), so inference and the Kaggle kernel read a
question the way the model was trained to; a model exported before these settings existed reads as
`ReaderSettings.legacy()` (prompt, then context; [CLS] pooling; the context's first characters).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mcq.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

META_KEY = "reader"
LAYOUTS = ("context-first", "prompt-context")
POOLINGS = ("cls", "mean")
SELECTIONS = ("none", "lexical")


@dataclass(frozen=True)
class ReaderSettings:
    """input_layout: `context-first` feeds `context` / `prompt [SEP] option` (only the context is cut, from its
    end) and `prompt-context` feeds `prompt [SEP] context` / `option` (the context, then the prompt, is cut).
    pooling: `cls` classifies from the first token (AutoModelForMultipleChoice's pooler), `mean` from the mean
    of the pair's tokens (what sentence-transformers backbones were trained to produce).
    context_select: `lexical` keeps the context's sentences that share the most rare words with the prompt and
    options, in document order, up to the pair's token budget; `none` keeps the context's beginning."""

    input_layout: str = "context-first"
    pooling: str = "cls"
    context_select: str = "none"

    def __post_init__(self):
        for name, allowed in (("input_layout", LAYOUTS), ("pooling", POOLINGS), ("context_select", SELECTIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: '{getattr(self, name)}' is not one of {', '.join(allowed)}")

    @classmethod
    def legacy(cls) -> ReaderSettings:
        """What every model exported before the reader settings were recorded did."""
        return cls("prompt-context", "cls", "none")

    @classmethod
    def of_meta(cls, meta: dict) -> ReaderSettings:
        """A model's reader settings from its mcq_model.json (legacy when it has none)."""
        recorded = meta.get(META_KEY)
        if not recorded:
            return cls.legacy()
        if not isinstance(recorded, dict):
            raise ConfigError(f"mcq_model.json '{META_KEY}': expected a mapping, got {recorded!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        return dataclasses.replace(cls.legacy(), **{k: v for k, v in recorded.items() if k in known})

    def as_meta(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The input format in words (mcq_model.json 'input_format')."""
        if self.input_layout == "context-first":
            pair = "first=context, second=prompt [SEP] option; truncation=only_first (the context's end)"
        else:
            pair = "first=prompt [SEP] context, second=option; truncation=only_first (right)"
        return f"{pair}; context sentences: {self.context_select}; pooling: {self.pooling}"


def use_pooling(model: torch.nn.Module, pooling: str) -> torch.nn.Module:
    """With `mean`, the multiple-choice head classifies from the masked mean of the backbone's last hidden
    states instead of the first token: the mean is written over position 0 of the hidden states the head's
    pooler reads, so the head's own weights (pooler dense, classifier) and every parameter name stay as they
    are (layer groups, LoRA and export are unchanged). `cls` leaves the model as it is."""
    import torch

    if pooling == "cls" or getattr(model, "_mcq_pooling", None) == pooling:
        return model  # cls: as loaded; mean twice: the hooks are already there
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling: '{pooling}' is not one of {', '.join(POOLINGS)}")
    backbone: torch.nn.Module | None = getattr(model, str(model.base_model_prefix), None)
    pooler = getattr(model, "pooler", None) or getattr(backbone, "pooler", None)
    if backbone is None or pooler is None:
        raise ConfigError(
            f"pooling mean: {type(model).__name__} has no pooler that reads the first token; use pooling cls"
        )
    mask: dict[str, torch.Tensor | None] = {"value": None}

    def keep_mask(_module, args, kwargs):
        mask["value"] = kwargs.get("attention_mask")

    def mean_first(_module, args):
        hidden = args[0]
        weights = mask["value"]
        if weights is None or weights.shape[:2] != hidden.shape[:2]:
            weights = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
        weights = weights.to(torch.float32).unsqueeze(-1)  # summed in fp32: fp16 sums of long inputs overflow
        mean = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return (torch.cat([mean.to(hidden.dtype).unsqueeze(1), hidden[:, 1:]], dim=1), *args[1:])

    backbone.register_forward_pre_hook(keep_mask, with_kwargs=True)
    pooler.register_forward_pre_hook(mean_first)
    setattr(model, "_mcq_pooling", pooling)  # noqa: B010 (torch types module attributes as tensors)
    return model


def trained_pooling(folder: str | Path) -> str | None:
    """The pooling a sentence-transformers checkpoint was trained with (`mean` or `cls`), read from its
    modules.json and Pooling module config; None for a plain backbone or one whose pooling is neither."""
    folder = Path(folder)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        pooling = next(m for m in modules if str(m.get("type", "")).endswith("Pooling"))
        config = json.loads((folder / pooling.get("path", "") / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return None  # not a sentence-transformers folder (or an unreadable one): nothing to advise
    if not isinstance(config, dict):
        return None
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    return None


def pooling_advice(folder: str | Path, pooling: str) -> str | None:
    """One line when `pooling` is not what the checkpoint at `folder` was trained with, else None."""
    trained = trained_pooling(folder)
    if trained is None or trained == pooling:
        return None
    return (
        f"pooling: {pooling}, but {folder} is a sentence-transformers checkpoint trained with {trained} pooling; "
        f"set pooling: {trained} (on stem1k, mean pooling lifted MiniLM by 0.05-0.08 MAP@3 a seed over cls, with "
        "and without context: docs/BENCHMARKS.md, issue 22)"
    )
