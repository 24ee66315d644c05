"""Typed configuration: one dataclass per concern, loaded from YAML, overridable from the CLI.

One name per concept everywhere: the YAML key, the CLI flag (`--per-device-batch` for
`per_device_batch`) and the attribute are the same word. Unknown keys are an error.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .attention import ATTENTION
from .lr import SHAPES


class ConfigError(ValueError):
    """A configuration file or flag that cannot be used; the message says which key and why."""


def help_field(default, help: str, **kw):
    """A dataclass field with a help string (shown by --help)."""
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the DeBERTa-v3-large recipe (see configs/)."""

    # data
    train: list[str] = help_field([], "training question files (CSV, Parquet, JSONL); several are concatenated")
    extra_train: list[str] = help_field([], "extra training files, e.g. generated questions, appended to train")
    valid: str | None = help_field(None, "validation question file with an answer column (scored with MAP@3)")
    max_train: int | None = help_field(None, "use only the first N training questions (quick runs)")
    max_valid: int | None = help_field(None, "use only the first N validation questions")
    max_length: int = help_field(256, "tokens per (prompt [+ context], option) pair; context then prompt are cut, never the option")
    # model
    model: str = help_field("microsoft/deberta-v3-large", "backbone: hub name, local folder, or package:<module> for a model shipped in a Python package")
    output_dir: str = help_field("runs/deberta-v3-large", "run folder: seed checkpoints, exported models, report")
    seeds: list[int] = help_field([0, 1, 2], "one run and one exported model per seed")
    # phase 1: head only
    head_steps: int = help_field(100, "phase 1 optimizer steps training only the new head (0 skips the phase)")
    head_lr: float = help_field(1e-3, "phase 1 learning rate of the head")
    # phase 2: the whole model but the word embeddings
    epochs: float = help_field(1.0, "phase 2 epochs")
    max_steps: int = help_field(-1, "phase 2 step limit (overrides epochs when > 0)")
    freeze_word_embeddings: bool = help_field(True, "keep the word-embedding matrix frozen in phase 2 ('do no harm')")
    base_lr: float = help_field(1e-4, "learning rate of the backbone's pre-training recipe")
    base_batch: int = help_field(256, "batch size that base_lr was used with in pre-training")
    lr: float | None = help_field(None, "top learning rate; when unset it is base_lr x effective batch / base_batch")
    layer_lr_shape: str = help_field("cosine", f"per-layer LR shape, bottom to top: one of {SHAPES}")
    layer_lr_min: float = help_field(0.1, "cosine: fraction of the top LR given to the lowest group (embeddings)")
    layer_lr_decay: float = help_field(2.6, "geometric: divide the LR by this per group going down (ULMFiT)")
    weight_decay: float = help_field(0.01, "AdamW weight decay (not on biases and norm weights)")
    adam_eps: float = help_field(1e-6, "AdamW epsilon; DeBERTa used 1e-6 (1e-8 has gone NaN in fp16)")
    warmup_ratio: float = help_field(0.1, "linear warm-up over this fraction of phase 2 steps, then linear decay")
    max_grad_norm: float = help_field(1.0, "gradient clipping norm")
    # loop (handed to transformers' Trainer)
    per_device_batch: int = help_field(45, "questions per device per step (each question is n_options sequences)")
    grad_accum: int = help_field(1, "gradient accumulation steps")
    eval_batch: int = help_field(16, "questions per device per evaluation step")
    precision: str = help_field("bf16", "bf16, fp16 or fp32 (fp32 on CPU whatever is set)")
    gradient_checkpointing: bool = help_field(False, "trade compute for memory in phase 2")
    attention: str = help_field("eager", "DeBERTa attention: eager (transformers') or disentangled-flash (fused Triton kernels on CUDA: pip install disentangled-flash)")
    auto_find_batch_size: bool = help_field(False, "on out-of-memory, halve the per-device batch and retry (Trainer's); the LR stays the one derived for the configured batch, and a warning says so")
    group_by_length: bool = help_field(True, "batch questions of similar length together (less padding)")
    logging_steps: int = help_field(10, "log loss and every group's LR every N steps")
    save_steps: int = help_field(200, "checkpoint every N steps (for resume)")
    save_total_limit: int = help_field(2, "checkpoints kept per phase")
    eval_per_epoch: bool = help_field(True, "score the validation set after every epoch")
    report_to: list[str] = help_field(["none"], "trackers for Trainer: none, tensorboard, wandb, trackio, aim, ...")
    num_workers: int = help_field(0, "data loader workers")
    keep_checkpoints: bool = help_field(False, "keep Trainer checkpoints after a seed is exported (else removed to save disk)")
    # export
    export_fp16: bool = help_field(False, "export weights in fp16 (half the size; logits equal to fp16 tolerance)")

    def __post_init__(self):
        if self.layer_lr_shape not in SHAPES:
            raise ConfigError(f"layer_lr_shape: '{self.layer_lr_shape}' is not one of {SHAPES}")
        if self.attention not in ATTENTION:
            raise ConfigError(f"attention: '{self.attention}' is not one of {', '.join(ATTENTION)}")
        if self.precision not in {"bf16", "fp16", "fp32"}:
            raise ConfigError(f"precision: '{self.precision}' is not one of bf16, fp16, fp32")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: need at least one seed and no repeats, got {self.seeds}")
        for name in ("max_length", "per_device_batch", "grad_accum", "eval_batch", "base_batch", "logging_steps", "save_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.head_steps < 0:
            raise ConfigError(f"head_steps: must be >= 0, got {self.head_steps}")
        if not 0 < self.layer_lr_min <= 1:
            raise ConfigError(f"layer_lr_min: must be in (0, 1], got {self.layer_lr_min}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")

    def check_ready(self) -> None:
        """Checks that need the whole configuration (file + flags) before a run starts."""
        if not self.train:
            raise ConfigError("train: no training file; set `train:` in the config or pass --train FILE")


def load_config(cls, path: str | Path | None, overrides: dict | None = None):
    """Build `cls` from a YAML file plus overrides; unknown keys raise ConfigError naming them."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{path or 'flags'}: unknown key(s) {unknown}. Known keys: {sorted(known)}"
        )
    hints = typing.get_type_hints(cls)
    values = {k: _typed(v, hints[k], f"{path}: {k}") for k, v in values.items()}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{path or 'flags'}: {err}") from err


def _typed(value, hint, where: str):
    """A YAML value as the field's type. YAML reads `2e-5` (no dot) as a string, and one file for a list
    field is natural to write without brackets; anything else of the wrong type is a ConfigError."""
    base = _base_type(hint)
    if value is None:
        if base is not hint:  # Optional
            return None
        raise ConfigError(f"{where}: needs a value")
    if typing.get_origin(base) is list:
        item = typing.get_args(base)[0]
        return [_scalar(v, item, where) for v in (value if isinstance(value, list) else [value])]
    return _scalar(value, base, where)


def _scalar(value, kind, where: str):
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind in (int, float) and not isinstance(value, bool):
        if isinstance(value, (int, float)) and (kind is float or float(value).is_integer()):
            return kind(value)
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
    elif kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per field, named like the field with '-' for '_'; all default to None (= keep config).
    The help shows the dataclass default (what applies when neither the YAML nor a flag sets it)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        kw = {"dest": f.name, "default": None, "help": f"{f.metadata.get('help', '')} (default: {_shown_default(f)})"}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        base = _base_type(kind)
        if typing.get_origin(base) is list:
            parser.add_argument(flag, nargs="+", type=typing.get_args(base)[0], **kw)
        else:
            parser.add_argument(flag, type=base, **kw)


def _shown_default(f: dataclasses.Field) -> str:
    """A field's default as a user would type it: lists space-separated, booleans as on/off, % escaped."""
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, list):
        text = " ".join(map(str, value)) if value else "none"
    else:
        text = "unset" if value is None else str(value)
    return text.replace("%", "%%")


def _base_type(kind):
    """`float | None` -> float; other types unchanged."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0]
    return kind


def flag_overrides(args: argparse.Namespace, cls) -> dict:
    """The dataclass fields that were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
