"""A run's data, read and checked once for all its seeds: the questions (no leak from validation into
training, the same files a resumed run started with), their context, their features, and the top LR."""

from __future__ import annotations

import dataclasses
import logging

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from mcq.core.data import Questions, concat_questions, read_questions
from mcq.core.features import encode
from mcq.core.model import load_tokenizer, resolve_model_path
from mcq.core.reader import pooling_advice
from mcq.errors import ConfigError, DataError
from mcq.train import distributed
from mcq.train.config import TrainConfig
from mcq.train.context import retrieve_for_run
from mcq.train.layout import RunLayout
from mcq.train.phases import derive_lr
from mcq.train.tuning import tuning_for

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
    tuning_for(cfg).check(model_path)  # e.g. LoRA: peft installed, target modules known, before any retrieval
    advice = pooling_advice(model_path, cfg.pooling)
    if advice and distributed.is_main():  # once, not once per process
        log.warning(advice)
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
