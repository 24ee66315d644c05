"""transformers' Trainer, set up for one phase: its arguments, per-group LR logging and file-order evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainingArguments

from mcq.core.data import Questions
from mcq.core.metrics import map3_score
from mcq.train.config import TrainConfig
from mcq.train.lr import schedule_factor, warmup_steps_for
from mcq.train.phases import Phase

log = logging.getLogger(__name__)


class RecipeTrainer(Trainer):
    """Trainer for one phase: its scheduler is `schedule_factor` of mcq.train.lr (the formula the docs show),
    and it logs the LR of every optimizer group (`lr/<group>`), so trackers show the per-layer schedule; its
    own `learning_rate` field is the top (head) LR."""

    _step_lrs: dict[str, float] = {}

    def __init__(self, *args, phase: Phase, **kwargs) -> None:
        self.phase = phase
        super().__init__(*args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Every group's LR (top x its layer factor, set by the optimizer groups) times schedule_factor(step):
        so each group trains at Phase.lr_at(group, step), the one formula."""
        if self.lr_scheduler is None:
            phase, optimizer = self.phase, optimizer or self.optimizer
            assert optimizer is not None, "the optimizer is built before its scheduler"
            warmup = warmup_steps_for(phase.warmup, num_training_steps)
            self.lr_scheduler = LambdaLR(
                optimizer,
                lambda step: schedule_factor(phase.schedule, step, num_training_steps, warmup),
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _get_learning_rate(self) -> float:
        # Trainer calls this after each optimizer step, before the scheduler's: the LRs that step used.
        # It reports the first group's, here the embeddings' (the lowest); report the top one.
        if self.optimizer is None or self.is_deepspeed_enabled:
            return super()._get_learning_rate()
        self._step_lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        return max(self._step_lrs.values())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for name, lr in self._step_lrs.items():
                if not name.endswith(".no_decay"):  # same LR as its decay twin
                    logs[f"lr/{name}"] = lr
        super().log(logs, start_time)

    def _get_eval_sampler(self, eval_dataset):
        # Trainer length-groups (and so reorders) evaluation when training is length-grouped; scoring
        # needs file order to rank exactly as inference does. Under DDP the library's default is kept.
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


def training_args(cfg: TrainConfig, phase: Phase, out: Path, seed: int, has_valid: bool) -> TrainingArguments:
    """Trainer settings of one phase; `learning_rate` is the phase's top LR, which the optimizer groups scale."""
    cuda = torch.cuda.is_available()
    head = phase.name == "head"
    return TrainingArguments(
        output_dir=str(out),
        seed=seed,
        data_seed=seed,
        learning_rate=phase.top_lr,
        lr_scheduler_type=phase.schedule,
        # transformers 5 reads warmup_steps < 1 as a ratio of the phase's steps (warmup_ratio is deprecated)
        warmup_steps=phase.warmup,
        num_train_epochs=phase.epochs,
        max_steps=phase.max_steps,
        weight_decay=cfg.weight_decay,
        adam_epsilon=cfg.adam_eps,
        max_grad_norm=cfg.max_grad_norm,
        per_device_train_batch_size=cfg.per_device_batch,
        per_device_eval_batch_size=cfg.eval_batch,
        gradient_accumulation_steps=cfg.grad_accum,
        bf16=cuda and cfg.precision == "bf16",
        fp16=cuda and cfg.precision == "fp16",
        use_cpu=not cuda,
        activation_checkpointing=cfg.gradient_checkpointing and not head,
        auto_find_batch_size=cfg.auto_find_batch_size,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy="epoch" if has_valid and cfg.eval_per_epoch and not head else "no",
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=cfg.report_to,
        remove_unused_columns=False,
        dataloader_num_workers=cfg.num_workers,
        disable_tqdm=None,
        ddp_find_unused_parameters=False,
    )


def eval_metrics(prediction, valid: Questions) -> dict[str, float]:
    """Per-epoch MAP@3, ranked as inference ranks; refuses predictions that are not in file order."""
    if not np.array_equal(np.asarray(prediction.label_ids), np.asarray(valid.answers)):
        raise RuntimeError("evaluation predictions are not in validation-file order; scores would be wrong")
    return {"map3": map3_score(prediction.predictions, prediction.label_ids, valid.options)}


def warn_if_batch_shrank(cfg: TrainConfig, trainer: Trainer, seed: int, phase: Phase) -> None:
    """auto_find_batch_size halves the batch on out-of-memory; the LR was derived for the configured one."""
    used = getattr(trainer, "_train_batch_size", None)
    if used is not None and used != trainer.args.train_batch_size:
        log.warning(
            "seed %d %s: out of memory at per-device batch %d, trained at %d (auto_find_batch_size); the LR "
            "was derived for the configured batch. To keep the recipe, set --per-device-batch %d and "
            "--grad-accum so that their product is %d.",
            seed,
            phase.title,
            cfg.per_device_batch,
            used,
            used,
            cfg.per_device_batch * cfg.grad_accum,
        )
