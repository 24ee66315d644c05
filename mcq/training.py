"""The recipe, seed by seed: phase 1 trains the new head alone, phase 2 everything but the word
embeddings with cosine-scaled layer-wise LRs; each seed is exported and scored, then ensembled.

transformers' Trainer runs the loop (precision, accumulation, torchrun, resume, trackers); this
module only prepares what goes into it: the frozen parameters, the optimizer groups and the data.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import SequentialSampler
from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .attention import use_attention
from .config import ConfigError, TrainConfig
from .data import DataError, Questions, concat_questions, read_questions
from .export import META_FILE, commit_export, export_meta, stage_export, write_meta
from .features import MultipleChoiceCollator, encode
from .infer import score_map3
from .io import atomic_write, atomic_write_text
from .lr import effective_batch, scaled_lr
from .metrics import mean_logits
from .model import (
    count_parameters, layer_groups, load_multiple_choice, resolve_model_path, set_phase, word_embedding_names,
)
from .optim import build_optimizer, param_groups
from .predict import ensemble_logits, inspect_models
from .report import write_report
from .submission import write_array

log = logging.getLogger(__name__)

VALID_LOGITS = "valid_logits.npy"  # per seed folder: the exported model's validation logits
VALID_FINGERPRINT = "valid_logits.fingerprint"  # Questions.fingerprint() of the set they were computed on


class RecipeTrainer(Trainer):
    """Trainer that also logs the LR of every optimizer group (`lr/<group>`), so trackers show the
    per-layer schedule; its own `learning_rate` field is the top (head) LR."""

    _step_lrs: dict[str, float] = {}

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


@dataclasses.dataclass
class RunData:
    """Everything shared by the seeds of one run: tokenised data and the derived top LR."""

    train: Questions
    valid: Questions | None
    train_features: object
    valid_features: object | None
    tokenizer: object
    model_path: str
    top_lr: float


def load_run_data(cfg: TrainConfig) -> RunData:
    """Read, validate and tokenise all data before any training starts."""
    cfg.check_ready()
    files = cfg.train + cfg.extra_train
    train = concat_questions([read_questions(p, require_answer=True) for p in files]).head(cfg.max_train)
    valid = read_questions(cfg.valid, require_answer=True).head(cfg.max_valid) if cfg.valid else None
    if valid is not None and valid.letters != train.letters:
        raise DataError(
            f"{cfg.valid}: options {''.join(valid.letters)} but training data has {''.join(train.letters)}; "
            "validation must have the same option columns."
        )
    model_path = resolve_model_path(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return RunData(
        train=train,
        valid=valid,
        train_features=encode(train, tokenizer, cfg.max_length),
        valid_features=encode(valid, tokenizer, cfg.max_length) if valid else None,
        tokenizer=tokenizer,
        model_path=model_path,
        top_lr=derive_lr(cfg),
    )


def derive_lr(cfg: TrainConfig) -> float:
    """The top LR: given, or scaled from the pre-training recipe to this run's effective batch (printed)."""
    devices = _data_parallel_devices()
    batch = effective_batch(cfg.per_device_batch, cfg.grad_accum, devices)
    if cfg.lr is not None:
        log.info("lr = %.3g (set explicitly; effective batch %d)", cfg.lr, batch)
        return cfg.lr
    lr = scaled_lr(cfg.base_lr, cfg.base_batch, batch)
    log.info(
        "lr = base_lr %.3g x effective batch %d (%d per device x %d accumulation x %d device(s)) / base_batch %d = %.4g",
        cfg.base_lr, batch, cfg.per_device_batch, cfg.grad_accum, devices, cfg.base_batch, lr,
    )
    return lr


def training_args(cfg: TrainConfig, out: Path, seed: int, phase: str, has_valid: bool) -> TrainingArguments:
    """Trainer settings of one phase; phase 'head' runs a fixed number of steps at a constant LR."""
    cuda = torch.cuda.is_available()
    head = phase == "head"
    return TrainingArguments(
        output_dir=str(out),
        seed=seed,
        data_seed=seed,
        per_device_train_batch_size=cfg.per_device_batch,
        per_device_eval_batch_size=cfg.eval_batch,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.head_steps if head else cfg.max_steps,
        lr_scheduler_type="constant" if head else "linear",
        warmup_steps=0 if head else cfg.warmup_ratio,
        max_grad_norm=cfg.max_grad_norm,
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


def run_phase(cfg, data: RunData, model, seed: int, phase: str, out: Path, top_lr: float, resume: bool):
    """Train one phase with our optimizer groups; resumes from the phase's last checkpoint if asked."""
    if phase == "head":
        groups = param_groups(model, top_lr, "constant", 1.0, 1.0, cfg.weight_decay)
    else:
        groups = param_groups(
            model, top_lr, cfg.layer_lr_shape, cfg.layer_lr_min, cfg.layer_lr_decay, cfg.weight_decay
        )
    optimizer = build_optimizer(groups, cfg.adam_eps)
    has_valid = data.valid is not None
    trainer = RecipeTrainer(
        model=model,
        args=training_args(cfg, out, seed, phase, has_valid),
        train_dataset=data.train_features,
        eval_dataset=data.valid_features if has_valid else None,
        data_collator=MultipleChoiceCollator(data.tokenizer, pad_to_multiple_of=8),
        processing_class=data.tokenizer,
        optimizers=(optimizer, None),
        compute_metrics=(lambda p: eval_metrics(p, data.valid)) if has_valid else None,
    )
    checkpoint = get_last_checkpoint(str(out)) if resume and out.is_dir() else None
    if checkpoint:
        log.info("seed %d %s: resuming from %s", seed, phase, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    _warn_if_batch_shrank(cfg, trainer, seed, phase)
    return trainer, [{"name": g["name"], "lr": g["lr"], "params": sum(p.numel() for p in g["params"])} for g in groups]


def eval_metrics(prediction, valid: Questions) -> dict[str, float]:
    """Per-epoch MAP@3, ranked as inference ranks; refuses predictions that are not in file order."""
    if not np.array_equal(np.asarray(prediction.label_ids), np.asarray(valid.answers)):
        raise RuntimeError("evaluation predictions are not in validation-file order; scores would be wrong")
    return {"map3": score_map3(prediction.predictions, valid)}


def _warn_if_batch_shrank(cfg: TrainConfig, trainer: Trainer, seed: int, phase: str) -> None:
    """auto_find_batch_size halves the batch on out-of-memory; the LR was derived for the configured one."""
    used = getattr(trainer, "_train_batch_size", None)
    if used is not None and used != trainer.args.train_batch_size:
        log.warning(
            "seed %d %s: out of memory at per-device batch %d, trained at %d (auto_find_batch_size); the LR "
            "was derived for the configured batch. To keep the recipe, set --per-device-batch %d and "
            "--grad-accum so that their product is %d.", seed, phase, cfg.per_device_batch, used, used,
            cfg.per_device_batch * cfg.grad_accum,
        )


def head_state(model) -> dict[str, torch.Tensor]:
    """The head's weights: all that phase 1 changes, so all that must be kept between phases."""
    head = set(layer_groups(model)[-1][1])
    return {k: v.detach().cpu().contiguous() for k, v in model.named_parameters() if k in head}


def train_seed(cfg: TrainConfig, data: RunData, seed: int, resume: bool) -> dict:
    """Both phases for one seed, then export + score; returns the seed's part of the report."""
    start = time.perf_counter()
    run_dir = Path(cfg.output_dir)
    seed_dir = run_dir / f"seed{seed}"
    set_seed(seed)
    model = load_multiple_choice(data.model_path)
    use_attention(model, cfg.attention, _train_device())

    head_file = seed_dir / "head.safetensors"
    if cfg.head_steps > 0:
        if resume and head_file.is_file():
            unexpected = model.load_state_dict(load_file(head_file), strict=False).unexpected_keys
            if unexpected:
                raise ConfigError(f"{head_file} does not fit {cfg.model} ({unexpected[:3]}); delete it to redo phase 1.")
            log.info("seed %d: phase 1 done earlier, head loaded from %s", seed, head_file)
        else:
            set_phase(model, "head")
            run_phase(cfg, data, model, seed, "head", seed_dir / "phase1", cfg.head_lr, resume)
            if _is_main():
                _atomic_save_file(head_state(model), head_file)
                _drop_checkpoints(seed_dir / "phase1")

    set_phase(model, "full", cfg.freeze_word_embeddings)
    total, trainable = count_parameters(model)
    frozen_words = sum(dict(model.named_parameters())[n].numel() for n in word_embedding_names(model))
    log.info(
        "seed %d phase 2: %s total parameters, %s trainable (word embeddings %s %s)",
        seed, f"{total:,}", f"{trainable:,}", f"{frozen_words:,}", "frozen" if cfg.freeze_word_embeddings else "trained",
    )
    trainer, groups = run_phase(cfg, data, model, seed, "full", seed_dir / "phase2", data.top_lr, resume)
    history = [
        {"epoch": e["epoch"], "map3": e["eval_map3"], "loss": e.get("eval_loss")}
        for e in trainer.state.log_history if "eval_map3" in e
    ]
    lr_log = [e for e in trainer.state.log_history if any(k.startswith("lr/") for k in e)]
    result = {
        "seed": seed,
        "total_params": total,
        "trainable_params": trainable,
        "groups": groups,
        "eval_history": history,
        "lr_log": lr_log,
        "train_loss": trainer.state.log_history[-1].get("train_loss"),
    }
    if _is_main():
        result.update(export_and_score(cfg, data, trainer.model, seed))
        if not cfg.keep_checkpoints:
            _drop_checkpoints(seed_dir / "phase2")
    _barrier()
    result["wall_s"] = time.perf_counter() - start
    return result


def export_and_score(cfg: TrainConfig, data: RunData, model, seed: int) -> dict:
    """Export the seed's model, score the exported folder through the inference path, then commit it."""
    dest = Path(cfg.output_dir) / "models" / f"seed{seed}"
    tmp = stage_export(model, data.tokenizer, dest, fp16=cfg.export_fp16)
    meta = export_meta(seed, cfg.max_length, data.train.letters, cfg.model, None, export_fp16=cfg.export_fp16)
    if data.valid is not None:
        write_meta(tmp, meta)  # the staged folder is now complete enough to load and score
        meta["valid_map3"] = score_model(tmp, data.valid, Path(cfg.output_dir) / f"seed{seed}", cfg.attention)
    commit_export(tmp, dest, meta)
    log.info("seed %d exported to %s (valid MAP@3 %s)", seed, dest, meta["valid_map3"])
    return {"export": str(dest), "valid_map3": meta["valid_map3"]}


def score_model(folder: Path, valid: Questions, seed_dir: Path, attention: str = "eager") -> float:
    """Validation logits of an exported folder through the inference code; saved for the ensemble."""
    # on this process's own device: under torchrun the other GPUs still hold the other ranks' training state
    [logits] = ensemble_logits(inspect_models([folder]), valid, devices=[_train_device()], attention=attention)
    write_array(seed_dir / VALID_LOGITS, logits)
    atomic_write_text(seed_dir / VALID_FINGERPRINT, valid.fingerprint())
    return score_map3(logits, valid)


def finished_seed(cfg: TrainConfig, seed: int) -> dict | None:
    """The report part of a seed whose export already exists (so it is not retrained), else None."""
    meta_file = Path(cfg.output_dir) / "models" / f"seed{seed}" / META_FILE
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    return {"seed": seed, "export": str(meta_file.parent), "valid_map3": meta.get("valid_map3"), "skipped": True}


def run_training(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train every seed (skipping finished ones on resume), ensemble them, and write the report."""
    start = time.perf_counter()
    run_dir = Path(cfg.output_dir)
    if not resume and any((run_dir / f"seed{s}").exists() for s in cfg.seeds):
        raise ConfigError(
            f"{run_dir} already holds a run. Add --resume to continue it (finished seeds are kept), "
            "or choose another --output-dir."
        )
    data = load_run_data(cfg)
    seeds = []
    for seed in cfg.seeds:
        done = finished_seed(cfg, seed) if resume else None
        if done:
            log.info("seed %d: already exported to %s, not retrained", seed, done["export"])
        seeds.append(done or train_seed(cfg, data, seed, resume))
    report = {
        "config": dataclasses.asdict(cfg),
        "n_train": len(data.train),
        "n_valid": len(data.valid) if data.valid else 0,
        "top_lr": data.top_lr,
        "seeds": seeds,
        "wall_s": time.perf_counter() - start,
    }
    if data.valid is not None and _is_main():
        logits = [seed_valid_logits(cfg, s, data.valid) for s in seeds]
        ensemble = mean_logits(logits).astype(np.float32)
        report["ensemble_valid_map3"] = score_map3(ensemble, data.valid)
        write_array(run_dir / "valid_logits_ensemble.npy", ensemble)
    if _is_main():
        write_report(run_dir, report)
    report = _from_main(report)
    _end_process_group()
    return report


def seed_valid_logits(cfg: TrainConfig, seed: dict, valid: Questions) -> np.ndarray:
    """A seed's saved validation logits, rescored from its export when missing or saved for other
    questions (a resumed run given another validation file)."""
    seed_dir = Path(cfg.output_dir) / f"seed{seed['seed']}"
    fingerprint = seed_dir / VALID_FINGERPRINT
    if (seed_dir / VALID_LOGITS).is_file() and fingerprint.is_file():
        if fingerprint.read_text(encoding="utf-8") == valid.fingerprint():
            return np.load(seed_dir / VALID_LOGITS)
        log.info("seed %d: the validation questions changed since it was scored; scoring again", seed["seed"])
    seed["valid_map3"] = score_model(Path(seed["export"]), valid, seed_dir, cfg.attention)
    return np.load(seed_dir / VALID_LOGITS)


def _drop_checkpoints(phase_dir: Path) -> None:
    """Remove a finished phase's Trainer checkpoints (model + optimizer state: GBs for a large model)."""
    for checkpoint in phase_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


def _atomic_save_file(tensors: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def _data_parallel_devices() -> int:
    """How many devices each take a per-device batch: torchrun's processes, or, without torchrun, every
    visible GPU (Trainer then wraps the model in DataParallel)."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1:
        log.warning(
            "%d GPUs visible without torchrun: Trainer uses DataParallel over all of them (slower than DDP). "
            "Prefer torchrun --nproc_per_node %d train.py ..., or CUDA_VISIBLE_DEVICES=0 for one GPU.", gpus, gpus,
        )
    return max(1, gpus)


def _train_device() -> torch.device:
    """The device this process trains on: its local rank's GPU when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _from_main(obj):
    """Rank 0's copy of `obj` on every rank (only rank 0 exports and scores), else `obj` itself."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _end_process_group() -> None:
    """Tear the process group down on every rank together; a rank that exits with it alive can abort
    in gloo's threads ("terminate called without an active exception") and fail the torchrun job."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
