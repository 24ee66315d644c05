"""One seed of the recipe: its phases through transformers' Trainer, then its export, scored through the
inference path. Trainer runs the loop (precision, accumulation, torchrun, resume, trackers); a SeedRun only
prepares what goes into it: the model as the tuning wraps it, what each phase trains, the optimizer groups."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, set_seed
from transformers.trainer_utils import get_last_checkpoint

from mcq.core.attention import use_attention
from mcq.core.batching import PAD_MULTIPLE
from mcq.core.data import Questions
from mcq.core.export import CONTEXT_KEY, EXPORT_ID, commit_export, export_meta, stage_export, write_meta
from mcq.core.features import MultipleChoiceCollator
from mcq.core.metrics import map3_score
from mcq.core.model import load_multiple_choice, word_embedding_names
from mcq.core.predict import inspect_models, models_logits
from mcq.core.reader import use_pooling
from mcq.errors import ConfigError
from mcq.io import atomic_write, atomic_write_text, write_array
from mcq.train import distributed
from mcq.train.blend import export_id
from mcq.train.config import TrainConfig
from mcq.train.data import RunData
from mcq.train.layout import RunLayout
from mcq.train.lr import mean_lr
from mcq.train.optim import build_optimizer, param_groups
from mcq.train.phases import Phase, derive_lr, freeze_for, head_state, recipe_phases
from mcq.train.trainer import RecipeTrainer, eval_metrics, training_args, warn_if_batch_shrank
from mcq.train.tuning import FullTuning, tuning_for

log = logging.getLogger(__name__)


@dataclass
class SeedRun:
    """Train, export and score one seed of a run (resuming what a killed run of it left)."""

    cfg: TrainConfig
    data: RunData
    seed: int
    resume: bool = False
    tuning: FullTuning = dataclasses.field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.tuning = self.tuning or tuning_for(self.cfg)
        self.layout = RunLayout.of(self.cfg.output_dir)

    def run(self) -> dict:
        """Every phase, then export + score; returns the seed's part of the report."""
        start = time.perf_counter()
        set_seed(self.seed)
        model = self.model()
        *head, full = recipe_phases(self.cfg, self.data.top_lr)
        for phase in head:
            self.train_head(model, phase)
        freeze_for(model, full, self.tuning)
        if self.cfg.layer_lr_norm == "mean":  # the average over what phase 2 trains: known once it is frozen
            full = dataclasses.replace(full, top_lr=derive_lr(self.cfg, model))
        total, trainable = self.tuning.counts(model)
        log.info(
            "seed %d %s: %s total parameters, %s trainable (word embeddings %s %s)",
            self.seed, full.title, f"{total:,}", f"{trainable:,}", f"{_word_embedding_size(model):,}",
            "frozen" if self.tuning.words_frozen(full) else "trained",
        )  # fmt: skip
        trainer, groups = self.train_phase(model, full)
        history = trainer.state.log_history
        result = {
            "seed": self.seed,
            "total_params": total,
            "trainable_params": trainable,
            "groups": groups,
            "eval_history": [
                {"epoch": e["epoch"], "map3": e["eval_map3"], "loss": e.get("eval_loss")}
                for e in history
                if "eval_map3" in e
            ],
            "lr_log": [e for e in history if any(k.startswith("lr/") for k in e)],
            "train_loss": history[-1].get("train_loss"),
        }
        if distributed.is_main():
            result.update(self.export_and_score(trainer.model))
            if not self.cfg.keep_checkpoints:
                drop_checkpoints(self.layout.phase_dir(self.seed, full.number))
        distributed.barrier()
        result["wall_s"] = time.perf_counter() - start
        if distributed.is_main():
            atomic_write_text(self.layout.seed_report(self.seed), json.dumps(result, default=str))
        return result

    def model(self) -> nn.Module:
        """The backbone with its new head, pooled and attended as configured, wrapped by the tuning."""
        backbone = load_multiple_choice(self.data.model_path)
        use_pooling(backbone, self.cfg.pooling)
        use_attention(backbone, self.cfg.attention, distributed.train_device())
        return self.tuning.wrap(backbone)

    def train_head(self, model: nn.Module, phase: Phase) -> None:
        """Phase 1, or on resume the head it saved; only the head's weights are kept (not a whole checkpoint)."""
        head_file = self.layout.head_file(self.seed)
        if self.resume and head_file.is_file():
            unexpected = model.load_state_dict(load_file(head_file), strict=False).unexpected_keys
            if unexpected:
                raise ConfigError(
                    f"{head_file} does not fit {self.cfg.model} ({unexpected[:3]}); delete it to redo phase 1."
                )
            log.info("seed %d: phase %d done earlier (%s), head loaded from %s", self.seed, phase.number, phase.name,
                     head_file)  # fmt: skip
            return
        freeze_for(model, phase, self.tuning)
        self.train_phase(model, phase)
        if distributed.is_main():
            atomic_write(head_file, lambda tmp: save_file(head_state(model, self.tuning), str(tmp)))
            drop_checkpoints(self.layout.phase_dir(self.seed, phase.number))

    def train_phase(self, model: nn.Module, phase: Phase):
        """Train one phase with our optimizer groups; resumes from the phase's last complete checkpoint."""
        cfg, data, valid = self.cfg, self.data, self.data.valid
        out = self.layout.phase_dir(self.seed, phase.number)
        args = training_args(cfg, phase, out, self.seed, valid is not None)
        groups = param_groups(
            model, args.learning_rate, phase.layers, args.weight_decay, self.tuning.layer_groups(model)
        )
        trainer = RecipeTrainer(
            phase=phase,
            model=model,
            args=args,
            train_dataset=data.train_features,
            eval_dataset=data.valid_features,
            data_collator=MultipleChoiceCollator(data.tokenizer, pad_to_multiple_of=PAD_MULTIPLE),
            processing_class=data.tokenizer,
            optimizers=(build_optimizer(groups, args.adam_epsilon), None),
            compute_metrics=(lambda p: eval_metrics(p, valid)) if valid is not None else None,
        )
        checkpoint = last_complete_checkpoint(out) if self.resume and out.is_dir() else None
        if checkpoint:
            log.info("seed %d %s: resuming from %s", self.seed, phase.title, checkpoint)
        summary = [{"name": g["name"], "lr": g["lr"], "params": sum(p.numel() for p in g["params"])} for g in groups]
        if phase.name == "full":
            log_phase_lrs(self.seed, phase, summary)
        trainer.train(resume_from_checkpoint=checkpoint)
        warn_if_batch_shrank(cfg, trainer, self.seed, phase)
        return trainer, summary

    def export_and_score(self, model: nn.Module) -> dict:
        """Export the seed's model, score the exported folder through the inference path, then commit it."""
        cfg, data = self.cfg, self.data
        dest = self.layout.export_dir(self.seed)
        model, record = self.tuning.for_export(model)  # a plain model: inference and the kernel need no peft
        extra: dict = {EXPORT_ID: export_id(cfg, self.seed), CONTEXT_KEY: cfg.context_source} | record
        extra |= {"retrieval": data.retrieval} if data.retrieval else {}
        tmp = stage_export(cast(PreTrainedModel, model), data.tokenizer, dest, fp16=cfg.export_fp16)
        meta = export_meta(
            self.seed, cfg.max_length, data.train.letters, cfg.model, cfg.reader, export_fp16=cfg.export_fp16, **extra
        )
        if data.valid is not None:
            write_meta(tmp, meta)  # the staged folder is now complete enough to load and score
            meta["valid_map3"] = score_model(tmp, data.valid, self.layout, self.seed, cfg.attention)
        commit_export(tmp, dest, meta)
        score = meta["valid_map3"]
        log.info("seed %d exported to %s (valid MAP@3 %s)", self.seed, dest, "-" if score is None else f"{score:.4f}")
        return {"export": str(dest), "valid_map3": meta["valid_map3"]}


def score_model(folder: Path, valid: Questions, layout: RunLayout, seed: int, attention: str) -> float:
    """Validation logits of an exported folder through the inference code; saved for the ensemble."""
    # on this process's own device: under torchrun the other GPUs still hold the other ranks' training state
    [logits] = models_logits(
        inspect_models([folder]), valid, devices=[distributed.train_device()], attention=attention
    )
    write_array(layout.valid_logits(seed), logits)
    atomic_write_text(layout.valid_fingerprint(seed), valid.fingerprint())
    assert valid.answers is not None
    return map3_score(logits, valid.answers, valid.options)


def last_complete_checkpoint(phase_dir: Path) -> str | None:
    """The newest checkpoint Trainer finished writing (trainer_state.json is its last file); newer ones a full
    disk or a kill left half-written are removed, never resumed from."""
    while (checkpoint := get_last_checkpoint(str(phase_dir))) is not None:
        if (Path(checkpoint) / "trainer_state.json").is_file():
            return checkpoint
        log.warning("%s: half-written (no trainer_state.json), removed; resuming from the one before", checkpoint)
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def log_phase_lrs(seed: int, phase: Phase, groups: list[dict]) -> None:
    """The derivation's last line: what the layer rule gives the lowest group and the model on average."""
    lowest = min(groups, key=lambda g: g["lr"])
    mean = mean_lr([g["lr"] for g in groups], [g["params"] for g in groups])
    log.info(
        "seed %d %s: peak LR %.3g at the top, %.3g at %s, %.3g averaged over the trainable parameters (%.2f of the "
        "top; ablations on MiniLM, docs/BENCHMARKS.md: a short run learns at this average)",
        seed, phase.title, phase.top_lr, lowest["lr"], lowest["name"], mean, mean / phase.top_lr,
    )  # fmt: skip


def drop_checkpoints(phase_dir: Path) -> None:
    """Remove a finished phase's Trainer checkpoints (model + optimizer state: GBs for a large model)."""
    for checkpoint in phase_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


def _word_embedding_size(model: nn.Module) -> int:
    params = dict(model.named_parameters())
    names = word_embedding_names(cast(PreTrainedModel, model))
    return sum(params[n].numel() for n in names)
