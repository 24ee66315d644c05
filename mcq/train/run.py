"""The recipe, seed by seed: each phase trains through transformers' Trainer, then the seed is exported,
scored through the inference path, and the seeds are ensembled.

Trainer runs the loop (precision, accumulation, torchrun, resume, trackers); this module only prepares
what goes into it: the data, the frozen parameters and the optimizer groups of each phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase, set_seed
from transformers.trainer_utils import get_last_checkpoint

from mcq.core.attention import use_attention
from mcq.core.batching import PAD_MULTIPLE
from mcq.core.data import Questions, concat_questions, read_questions
from mcq.core.export import commit_export, export_meta, stage_export, write_meta
from mcq.core.features import MultipleChoiceCollator, encode
from mcq.core.metrics import map3_score, mean_logits
from mcq.core.model import (
    load_multiple_choice,
    load_tokenizer,
    resolve_model_path,
    word_embedding_names,
)
from mcq.core.plan import CONTEXT_KEY, EXPORT_ID
from mcq.core.predict import inspect_models, models_logits
from mcq.core.reader import use_pooling
from mcq.errors import ConfigError, DataError
from mcq.io import atomic_write, atomic_write_text, write_array, writes_to
from mcq.train import distributed
from mcq.train.blend import blend_for_run, export_id
from mcq.train.config import TrainConfig, resume_differences
from mcq.train.context import retrieve_for_run
from mcq.train.layout import RunLayout, run_lock
from mcq.train.lora import check_lora, export_record, merge_for_export, parameter_counts, wrap_lora
from mcq.train.lr import mean_lr
from mcq.train.optim import build_optimizer, param_groups
from mcq.train.phases import Phase, derive_lr, freeze_for, head_state, recipe_phases
from mcq.train.report import write_report
from mcq.train.trainer import RecipeTrainer, eval_metrics, training_args, warn_if_batch_shrank

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunData:
    """Everything shared by the seeds of one run: tokenised data and the derived top LR."""

    train: Questions
    valid: Questions | None
    train_features: Dataset
    valid_features: Dataset | None
    tokenizer: PreTrainedTokenizerBase
    model_path: str
    top_lr: float
    retrieval: dict | None = None  # how the contexts were retrieved (recorded in every exported model)
    train_fingerprint: str = ""  # the training questions as read (before retrieval): a resume must find the same


def load_run_data(cfg: TrainConfig, layout: RunLayout | None = None, resume: bool = False) -> RunData:
    """Read, validate, retrieve context for (with cfg.index) and tokenise all data before any training starts;
    a resumed run must find the training questions it started with."""
    cfg.check_ready()
    files = cfg.train + cfg.extra_train
    train = concat_questions([read_questions(p, require_answer=True) for p in files]).head(cfg.max_train)
    read_fingerprint = train.fingerprint()
    if resume:
        check_same_training_data(layout or RunLayout.of(cfg.output_dir), read_fingerprint, files)
    valid = read_questions(cfg.valid, require_answer=True).head(cfg.max_valid) if cfg.valid else None
    if valid is not None:
        check_overlap(train, valid, cfg.valid_overlap)
    if valid is not None and valid.letters != train.letters:
        raise DataError(
            f"{cfg.valid}: options {''.join(valid.letters)} but training data has {''.join(train.letters)}; "
            "validation must have the same option columns."
        )
    model_path = resolve_model_path(cfg.model)
    if cfg.peft == "lora":
        check_lora(cfg, model_path)  # peft installed, target modules known: before retrieval and tokenising
    train, valid, retrieval = retrieve_for_run(cfg, layout or RunLayout.of(cfg.output_dir), train, valid)
    tokenizer = load_tokenizer(model_path)
    return RunData(
        train=train,
        valid=valid,
        train_features=encode(train, tokenizer, cfg.max_length, reader=cfg.reader),
        valid_features=encode(valid, tokenizer, cfg.max_length, reader=cfg.reader) if valid else None,
        tokenizer=tokenizer,
        model_path=model_path,
        top_lr=derive_lr(cfg),
        retrieval=retrieval,
        train_fingerprint=read_fingerprint,
    )


def check_same_training_data(layout: RunLayout, now: str, files: list[str]) -> None:
    """A resumed run must train on the questions it started with: a file edited in place under the same path
    would give its remaining seeds other data. The fingerprint is recorded when the run starts (a run of an
    older mcq has none, and cannot be checked)."""
    path = layout.data_fingerprint
    if path.is_file():
        started = path.read_text(encoding="utf-8").strip()
        if started != now:
            raise ConfigError(
                f"{layout.root}: the training questions changed since the run started ({', '.join(files)}: "
                f"fingerprint {started} then, {now} now). Restore the files the run started with to resume it, "
                "or start a new run in another --output-dir."
            )


def check_overlap(train: Questions, valid: Questions, policy: str) -> None:
    """Validation questions that are also training questions (same prompt and options, in any order) inflate
    MAP@3."""
    seen = {_question_key(p, o): i for i, (p, o) in enumerate(zip(train.prompts, train.options))}
    both = [(j, seen[k]) for j, k in enumerate(map(_question_key, valid.prompts, valid.options)) if k in seen]
    if not both:
        return
    j, i = both[0]
    message = (
        f"{valid.source}: {len(both)} of {len(valid)} validation questions are also in the training data "
        f"(e.g. id '{valid.ids[j]}' is training id '{train.ids[i]}' of {train.source}); the validation MAP@3 would "
        "be inflated. Remove them from one side, or set valid_overlap: warn (--valid-overlap warn) to go on."
    )
    if policy == "error":
        raise DataError(message)
    log.warning("%s", message)


def _question_key(prompt: str, options: list[str]) -> tuple:
    """The prompt and the set of options, case and spacing ignored: a question with its options reordered is
    the same question."""
    return (" ".join(prompt.lower().split()), *sorted(" ".join(o.lower().split()) for o in options))


def run_phase(cfg: TrainConfig, data: RunData, model, seed: int, phase: Phase, resume: bool):
    """Train one phase with our optimizer groups; resumes from the phase's last checkpoint if asked."""
    out = RunLayout.of(cfg.output_dir).phase_dir(seed, phase.number)
    valid = data.valid
    args = training_args(cfg, phase, out, seed, valid is not None)
    groups = param_groups(model, args.learning_rate, phase.layers, args.weight_decay)
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
    checkpoint = last_complete_checkpoint(out) if resume and out.is_dir() else None
    if checkpoint:
        log.info("seed %d %s: resuming from %s", seed, phase.title, checkpoint)
    summary = [{"name": g["name"], "lr": g["lr"], "params": sum(p.numel() for p in g["params"])} for g in groups]
    if phase.name == "full":
        log_phase_lrs(seed, phase, summary)
    trainer.train(resume_from_checkpoint=checkpoint)
    warn_if_batch_shrank(cfg, trainer, seed, phase)
    return trainer, summary


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


def train_head(cfg: TrainConfig, data: RunData, model, seed: int, phase: Phase, resume: bool) -> None:
    """Phase 1, or on resume the head it saved; only the head's weights are kept (not a whole checkpoint)."""
    layout = RunLayout.of(cfg.output_dir)
    head_file = layout.head_file(seed)
    if resume and head_file.is_file():
        unexpected = model.load_state_dict(load_file(head_file), strict=False).unexpected_keys
        if unexpected:
            raise ConfigError(f"{head_file} does not fit {cfg.model} ({unexpected[:3]}); delete it to redo phase 1.")
        log.info("seed %d: phase %d done earlier (%s), head loaded from %s", seed, phase.number, phase.name, head_file)
        return
    freeze_for(model, phase)
    run_phase(cfg, data, model, seed, phase, resume)
    if distributed.is_main():
        atomic_write(head_file, lambda tmp: save_file(head_state(model), str(tmp)))
        _drop_checkpoints(layout.phase_dir(seed, phase.number))


def train_seed(cfg: TrainConfig, data: RunData, seed: int, resume: bool) -> dict:
    """Every phase for one seed, then export + score; returns the seed's part of the report."""
    start = time.perf_counter()
    layout = RunLayout.of(cfg.output_dir)
    set_seed(seed)
    backbone = load_multiple_choice(data.model_path)
    use_pooling(backbone, cfg.pooling)
    use_attention(backbone, cfg.attention, distributed.train_device())
    # LoRA wraps before Trainer, and so before DDP wraps it
    model: nn.Module = wrap_lora(backbone, cfg) if cfg.peft == "lora" else backbone
    *head, full = recipe_phases(cfg, data.top_lr)
    for phase in head:
        train_head(cfg, data, model, seed, phase, resume)

    freeze_for(model, full)
    if cfg.layer_lr_norm == "mean":  # the average over what phase 2 trains: known once it is frozen
        full = dataclasses.replace(full, top_lr=derive_lr(cfg, model))
    total, trainable = parameter_counts(model)
    log.info(
        "seed %d %s: %s total parameters, %s trainable (word embeddings %s %s)",
        seed,
        full.title,
        f"{total:,}",
        f"{trainable:,}",
        f"{_word_embedding_size(model):,}",
        "frozen" if full.freeze_word_embeddings or cfg.peft == "lora" else "trained",
    )
    trainer, groups = run_phase(cfg, data, model, seed, full, resume)
    history = [
        {"epoch": e["epoch"], "map3": e["eval_map3"], "loss": e.get("eval_loss")}
        for e in trainer.state.log_history
        if "eval_map3" in e
    ]
    result = {
        "seed": seed,
        "total_params": total,
        "trainable_params": trainable,
        "groups": groups,
        "eval_history": history,
        "lr_log": [e for e in trainer.state.log_history if any(k.startswith("lr/") for k in e)],
        "train_loss": trainer.state.log_history[-1].get("train_loss"),
    }
    if distributed.is_main():
        result.update(export_and_score(cfg, data, trainer.model, seed))
        if not cfg.keep_checkpoints:
            _drop_checkpoints(layout.phase_dir(seed, full.number))
    distributed.barrier()
    result["wall_s"] = time.perf_counter() - start
    if distributed.is_main():
        atomic_write_text(layout.seed_report(seed), json.dumps(result, default=str))
    return result


def _word_embedding_size(model) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in word_embedding_names(model))


def export_and_score(cfg: TrainConfig, data: RunData, model, seed: int) -> dict:
    """Export the seed's model, score the exported folder through the inference path, then commit it."""
    dest = RunLayout.of(cfg.output_dir).export_dir(seed)
    extra: dict = {EXPORT_ID: export_id(cfg, seed), CONTEXT_KEY: cfg.context_source}
    extra |= {"retrieval": data.retrieval} if data.retrieval else {}
    if cfg.peft == "lora":
        extra["peft"] = export_record(cfg, model.config.model_type)
        model = merge_for_export(model)  # a plain model: inference and the kernel need no peft
    tmp = stage_export(model, data.tokenizer, dest, fp16=cfg.export_fp16)
    meta = export_meta(
        seed, cfg.max_length, data.train.letters, cfg.model, cfg.reader, export_fp16=cfg.export_fp16, **extra
    )
    if data.valid is not None:
        write_meta(tmp, meta)  # the staged folder is now complete enough to load and score
        meta["valid_map3"] = score_model(tmp, data.valid, RunLayout.of(cfg.output_dir), seed, cfg.attention)
    commit_export(tmp, dest, meta)
    log.info("seed %d exported to %s (valid MAP@3 %s)", seed, dest, meta["valid_map3"])
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


def finished_seed(layout: RunLayout, seed: int) -> dict | None:
    """The report part of a seed whose export already exists (so it is not retrained), else None."""
    meta_file = layout.export_meta(seed)
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    saved = layout.seed_report(seed)
    part = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}  # per-epoch scores, params
    return part | {
        "seed": seed,
        "export": str(meta_file.parent),
        "valid_map3": meta.get("valid_map3"),
        "skipped": True,
    }


def run_training(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train every seed (skipping finished ones on resume), ensemble them, and write the report."""
    layout = RunLayout.of(cfg.output_dir)
    with run_lock(layout) if distributed.is_main() else contextlib.nullcontext():
        return _run_training(cfg, layout, resume)


def check_resume(cfg: TrainConfig, layout: RunLayout, resume: bool) -> None:
    """A new run needs a fresh folder; a resumed one the settings it started with (else seeds would mix)."""
    # rank 0 decides (under torchrun it may already have written run_config.json when another rank looks)
    if not resume and distributed.is_main() and (layout.config.is_file() or layout.started(cfg.seeds)):
        raise ConfigError(
            f"{layout.root} already holds a run. Add --resume to continue it (finished seeds are kept), "
            "or choose another --output-dir."
        )
    if resume and layout.config.is_file():
        differences = resume_differences(json.loads(layout.config.read_text(encoding="utf-8")), cfg)
        if differences:
            raise ConfigError(
                f"{layout.root}: --resume with other settings than the run started with ({'; '.join(differences)}). "
                "Resume with the same settings, or start a new run in another --output-dir."
            )
    elif resume:
        log.warning("%s: no %s (a run of an older mcq); settings cannot be compared", layout.root, layout.config.name)


def _run_training(cfg: TrainConfig, layout: RunLayout, resume: bool) -> dict:
    start = time.perf_counter()
    check_resume(cfg, layout, resume)
    data = load_run_data(cfg, layout, resume)
    if distributed.is_main() and not (resume and layout.config.is_file()):
        atomic_write_text(layout.data_fingerprint, data.train_fingerprint)
        atomic_write_text(layout.config, json.dumps(dataclasses.asdict(cfg), indent=2))  # the data was good
    seeds = []
    training_s = 0.0  # seconds this process spent training seeds (each seed also records its own)
    for seed in cfg.seeds:
        done = finished_seed(layout, seed) if resume else None
        if done:
            log.info("seed %d: already exported to %s, not retrained", seed, done["export"])
        if done is None:
            advice = "free disk space, then run the same command with --resume (the seed continues from its last "
            begun = time.perf_counter()
            with writes_to(layout.seed_dir(seed), advice + "complete checkpoint)"):
                done = train_seed(cfg, data, seed, resume)
            training_s += time.perf_counter() - begun
        seeds.append(done)
    report: dict = {
        "config": dataclasses.asdict(cfg),
        "n_train": len(data.train),
        "n_valid": len(data.valid) if data.valid else 0,
        "n_options": len(data.train.letters),
        "top_lr": data.top_lr,
        "seeds": seeds,
        "wall_s": time.perf_counter() - start,
    }
    # a resumed run: the seeds trained by earlier processes count too (wall_s is this process's alone)
    report["total_wall_s"] = report["wall_s"] - training_s + sum(s.get("wall_s", 0.0) for s in seeds)
    if data.valid is not None and distributed.is_main():
        assert data.valid.answers is not None
        logits = [seed_valid_logits(cfg, layout, s, data.valid) for s in seeds]
        ensemble = mean_logits(logits).astype(np.float32)
        report["ensemble_valid_map3"] = map3_score(ensemble, data.valid.answers, data.valid.options)
        write_array(layout.ensemble_logits, ensemble)
        blend = blend_for_run(cfg, layout, data.valid, ensemble)
        if blend is not None:
            report["blend"] = blend.to_meta()
    if distributed.is_main():
        write_report(layout.root, report)
    report = distributed.from_main(report)
    distributed.end_process_group()
    return report


def seed_valid_logits(cfg: TrainConfig, layout: RunLayout, seed: dict, valid: Questions) -> np.ndarray:
    """A seed's saved validation logits, rescored from its export when missing or saved for other
    questions (a resumed run given another validation file)."""
    n = seed["seed"]
    fingerprint = layout.valid_fingerprint(n)
    if layout.valid_logits(n).is_file() and fingerprint.is_file():
        if fingerprint.read_text(encoding="utf-8") == valid.fingerprint():
            return np.load(layout.valid_logits(n))
        log.info("seed %d: the validation questions changed since it was scored; scoring again", n)
    seed["valid_map3"] = score_model(Path(seed["export"]), valid, layout, n, cfg.attention)
    return np.load(layout.valid_logits(n))


def _drop_checkpoints(phase_dir: Path) -> None:
    """Remove a finished phase's Trainer checkpoints (model + optimizer state: GBs for a large model)."""
    for checkpoint in phase_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)
