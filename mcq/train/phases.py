"""The recipe's two phases as objects: what trains, at which top LR, with which per-layer rule and schedule.

Phase 1 (head) trains only the new head at a constant LR, so random-head gradients cannot wreck the
pretrained weights; phase 2 (full) trains everything but (optionally) the word embeddings, with
layer-wise LRs under a linear warm-up and decay. A LoRA model (`train.lora`) trains its adapters and
its head's copy in phase 2 instead, every base weight frozen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn

from mcq.train import distributed
from mcq.train.config import TrainConfig
from mcq.train.lr import LayerRule, effective_batch, lr_at, mean_lr, scaled_lr, warmup_steps_for
from mcq.train.tuning import FULL, FullTuning, tuning_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    """One Trainer run of a seed; `number` names its checkpoint folder (seedN/phase1, seedN/phase2)."""

    name: str  # "head" or "full"
    number: int
    top_lr: float
    layers: LayerRule = field(default_factory=LayerRule)
    schedule: str = "constant"  # or "linear": warm-up, then linear decay to 0
    warmup: float = 0.0  # transformers 5 `warmup_steps`: a step count when >= 1, a ratio of the phase's steps when < 1
    max_steps: int = -1  # > 0 overrides epochs
    epochs: float = 1.0
    freeze_word_embeddings: bool = True

    @classmethod
    def head(cls, lr: float, steps: int = 100) -> Phase:
        return cls("head", 1, lr, max_steps=steps)

    @classmethod
    def full(cls, lr: float, layers: LayerRule | None = None, **kw) -> Phase:
        return cls("full", 2, lr, layers or LayerRule(), schedule="linear", **kw)

    @property
    def title(self) -> str:
        return f"phase {self.number} ({self.name})"

    def lr_at(self, group: int, n_groups: int, step: int, total_steps: int) -> float:
        """The LR of layer group `group` (0 = embeddings) at optimizer step `step` of this phase."""
        factor = self.layers.factors(n_groups)[group]
        return lr_at(self.top_lr, factor, self.schedule, step, total_steps, warmup_steps_for(self.warmup, total_steps))


def recipe_phases(cfg: TrainConfig, top_lr: float) -> list[Phase]:
    """The phases a seed runs: head only (unless head_steps is 0), then full at the derived top LR."""
    full = Phase.full(
        top_lr,
        LayerRule(cfg.layer_lr_shape, cfg.layer_lr_min, cfg.layer_lr_decay),
        warmup=cfg.warmup_ratio,
        max_steps=cfg.max_steps,
        epochs=cfg.epochs,
        freeze_word_embeddings=cfg.freeze_word_embeddings,
    )
    return ([Phase.head(cfg.head_lr, cfg.head_steps)] if cfg.head_steps > 0 else []) + [full]


def freeze_for(model: nn.Module, phase: Phase, tuning: FullTuning = FULL) -> None:
    """Train what the phase trains (the tuning says what: the head in phase 1; in phase 2 all but the frozen
    word embeddings, or for LoRA the adapters and the head's copy); freeze the rest."""
    trained = tuning.trained_names(model, phase)
    for name, param in model.named_parameters():
        param.requires_grad = name in trained


def head_state(model: nn.Module, tuning: FullTuning = FULL) -> dict:
    """The head's weights: all that phase 1 changes, so all that must be kept between phases."""
    head = tuning.head_names(model)
    return {k: v.detach().cpu().contiguous() for k, v in model.named_parameters() if k in head}


def derive_lr(cfg: TrainConfig, model: nn.Module | None = None) -> float:
    """Phase 2's top LR, every step of its derivation logged: `lr` when set, else the pre-training recipe's
    scaled to this run's effective batch (base_lr x batch / base_batch); with layer_lr_norm mean and the model
    (frozen as phase 2 trains it), raised so that the LR averaged over its trainable parameters is that one.
    At step s a layer group then trains at top x LayerRule factor x schedule_factor(s): `Phase.lr_at`, which the
    optimizer groups (top x factor) and RecipeTrainer's scheduler (schedule_factor) apply."""
    devices = distributed.data_parallel_devices()
    batch = effective_batch(cfg.per_device_batch, cfg.grad_accum, devices)
    if cfg.lr is not None:
        lr = cfg.lr
        log.info("lr = %.3g (set explicitly; effective batch %d)", lr, batch)
    else:
        lr = scaled_lr(cfg.base_lr, cfg.base_batch, batch)
        log.info(
            "lr = base_lr %.3g x effective batch %d (%d per device x %d accumulation x %d device(s)) / base_batch "
            "%d = %.4g", cfg.base_lr, batch, cfg.per_device_batch, cfg.grad_accum, devices, cfg.base_batch, lr,
        )  # fmt: skip
    if model is None or cfg.layer_lr_norm != "mean":
        return lr
    rule = LayerRule(cfg.layer_lr_shape, cfg.layer_lr_min, cfg.layer_lr_decay)
    params = dict(model.named_parameters())
    groups = tuning_for(cfg).layer_groups(model)
    counts = [sum(params[n].numel() for n in names if params[n].requires_grad) for _, names in groups]
    factor = mean_lr(rule.factors(len(groups)), counts)
    log.info(
        "layer_lr_norm mean: top LR = lr %.3g / %.3f (the %s rule's factors averaged over the trainable "
        "parameters) = %.4g", lr, factor, rule.shape, lr / factor,
    )  # fmt: skip
    return lr / factor
