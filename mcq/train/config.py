"""TrainConfig: every setting of a training run, with a help string and a check for each."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mcq.config import help_field
from mcq.core.attention import ATTENTION, DEFAULT_ATTENTION
from mcq.core.reader import ReaderSettings
from mcq.errors import ConfigError
from mcq.retrieve.settings import EVIDENCE_CHARS, EVIDENCE_K
from mcq.train.lr import SHAPES

PEFT_METHODS = ("none", "lora")
CONTEXT_SOURCES = ("auto", "index", "file", "none")
MIN_MAX_LENGTH = 16  # fewer tokens cannot hold a prompt, an option and the special tokens


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the DeBERTa-v3-large recipe (see configs/)."""

    # data
    train: list[str] = help_field([], "training question files (CSV, Parquet, JSONL); several are concatenated")
    extra_train: list[str] = help_field([], "extra training files, e.g. generated questions, appended to train")
    valid: str | None = help_field(None, "validation question file with an answer column (scored with MAP@3)")
    valid_overlap: str = help_field(
        "error", "validation questions also in the training data (same prompt and options): error or warn"
    )
    max_train: int | None = help_field(None, "use only the first N training questions (quick runs)")
    max_valid: int | None = help_field(None, "use only the first N validation questions")
    index: str | None = help_field(
        None, "index folder (mcq-retrieve build): retrieve context for the training and validation questions"
    )
    retrieve_k: int = help_field(3, "open book: passages per question, best first")
    context_chars: int = help_field(2000, "open book: characters of retrieved context per question at most")
    context_source: str = help_field(
        "auto",
        "where a question's context comes from: auto (retrieved when `index` is set, else the file's own context "
        "column), index, file (the file's own column even when `index` is set: e.g. a gold passage), none "
        "(closed book: any context is ignored)",
    )
    max_length: int = help_field(
        256, "tokens per (question, option) pair with its context; the context is cut first, never the option"
    )
    # how the model reads (recorded with each exported model; inference reads the same way)
    input_layout: str = help_field(
        ReaderSettings.input_layout,
        "context-first: context / prompt [SEP] option, only the context cut (the competition's open-book "
        "layout); prompt-context: prompt [SEP] context / option (before 2026-12)",
    )
    pooling: str = help_field(
        ReaderSettings.pooling,
        "cls: classify from the first token (the pooler); mean: from the masked mean of the pair's tokens "
        "(backbones trained for sentence embeddings with mean pooling, e.g. sentence-transformers' MiniLM)",
    )
    context_select: str = help_field(
        ReaderSettings.context_select,
        "none: the context's beginning; lexical: its sentences sharing the most rare words with the prompt and "
        "options, in document order, up to the pair's token budget (retrieve more with retrieve_k/context_chars)",
    )
    # model
    model: str = help_field(
        "microsoft/deberta-v3-large",
        "backbone: hub name, local folder, or package:<module> for a model shipped in a Python package",
    )
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
    layer_lr_norm: str = help_field(
        "top",
        "what the LR sets under layer-wise LRs: top = the top group's LR (the write-up's recipe); mean = the LR "
        "averaged over the trainable parameters, the top raised to match (short runs, small backbones: see "
        "docs/BENCHMARKS.md)",
    )
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
    attention: str = help_field(
        DEFAULT_ATTENTION,
        "DeBERTa attention: eager (transformers') or disentangled-flash "
        "(fused Triton kernels on CUDA: pip install disentangled-flash)",
    )
    auto_find_batch_size: bool = help_field(
        False,
        "on out-of-memory, halve the per-device batch and retry (Trainer's); the LR stays the one derived "
        "for the configured batch, and a warning says so",
    )
    group_by_length: bool = help_field(True, "batch questions of similar length together (less padding)")
    logging_steps: int = help_field(10, "log loss and every group's LR every N steps")
    save_steps: int = help_field(200, "checkpoint every N steps (for resume)")
    save_total_limit: int = help_field(2, "checkpoints kept per phase")
    eval_per_epoch: bool = help_field(True, "score the validation set after every epoch")
    report_to: list[str] = help_field(["none"], "trackers for Trainer: none, tensorboard, wandb, trackio, aim, ...")
    num_workers: int = help_field(0, "data loader workers")
    keep_checkpoints: bool = help_field(
        False, "keep Trainer checkpoints after a seed is exported (else removed to save disk)"
    )
    # LoRA (issue #12): adapters instead of the full phase 2, merged away before export
    peft: str = help_field(
        "none", "none (fine-tune the whole backbone) or lora (low-rank adapters + the head; pip install 'mcq[lora]')"
    )
    lora_r: int = help_field(8, "LoRA rank of each adapter")
    lora_alpha: int = help_field(16, "LoRA scaling numerator: an adapter's update is scaled by alpha / r")
    lora_dropout: float = help_field(0.1, "dropout on each adapter's input, in [0, 1)")
    lora_target_modules: list[str] = help_field(
        [],
        "modules that get adapters (last part of their name); empty = the backbone's defaults: DeBERTa-v2 "
        "query_proj key_proj value_proj dense, BERT (MiniLM) query key value dense",
    )
    # the blend of the models with evidence scores, chosen on the validation set (open book)
    evidence: list[str] = help_field(
        ["lexical", "dense"],
        "evidence scores blended with the models, weights chosen on the validation set and recorded with every "
        "exported model (infer.py and the kernel apply them): lexical, dense (when the index has an embedder or "
        "evidence_embedder is set); none: no blend",
    )
    evidence_embedder: str | None = help_field(
        None, "a local sentence-transformers folder (or package:<module>) for dense evidence where the index has none"
    )
    evidence_k: int = help_field(
        EVIDENCE_K, "passages the evidence scores read per question, retrieved from `index` for them alone"
    )
    evidence_chars: int = help_field(EVIDENCE_CHARS, "characters of those passages the evidence scores read at most")
    # export
    export_fp16: bool = help_field(False, "export weights in fp16 (half the size; logits equal to fp16 tolerance)")

    def __post_init__(self):
        if self.layer_lr_shape not in SHAPES:
            raise ConfigError(f"layer_lr_shape: '{self.layer_lr_shape}' is not one of {SHAPES}")
        if self.attention not in ATTENTION:
            raise ConfigError(f"attention: '{self.attention}' is not one of {', '.join(ATTENTION)}")
        if self.layer_lr_norm not in {"top", "mean"}:
            raise ConfigError(f"layer_lr_norm: '{self.layer_lr_norm}' is not one of top, mean")
        if self.context_source not in CONTEXT_SOURCES:
            raise ConfigError(f"context_source: '{self.context_source}' is not one of {', '.join(CONTEXT_SOURCES)}")
        if self.context_source == "index" and not self.index:
            raise ConfigError("context_source index: set `index` (--index FOLDER) to retrieve from")
        ReaderSettings(self.input_layout, self.pooling, self.context_select)  # an unknown value raises
        unknown = sorted(set(self.evidence) - {"lexical", "dense", "none"})
        if unknown:
            raise ConfigError(f"evidence: {unknown} not among lexical, dense, none")
        if self.valid_overlap not in {"error", "warn"}:
            raise ConfigError(f"valid_overlap: '{self.valid_overlap}' is not one of error, warn")
        if self.precision not in {"bf16", "fp16", "fp32"}:
            raise ConfigError(f"precision: '{self.precision}' is not one of bf16, fp16, fp32")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: need at least one seed and no repeats, got {self.seeds}")
        if any(s < 0 for s in self.seeds):
            raise ConfigError(f"seeds: must be >= 0 (a seed names a folder, seedN), got {self.seeds}")
        if self.max_length < MIN_MAX_LENGTH:
            raise ConfigError(
                f"max_length: must be at least {MIN_MAX_LENGTH} tokens (a prompt, an option and the separators), "
                f"got {self.max_length}"
            )
        for name in (
            "max_length",
            "per_device_batch",
            "grad_accum",
            "eval_batch",
            "base_batch",
            "logging_steps",
            "save_steps",
            "retrieve_k",
            "context_chars",
            "evidence_k",
            "evidence_chars",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.head_steps < 0:
            raise ConfigError(f"head_steps: must be >= 0, got {self.head_steps}")
        if not 0 < self.layer_lr_min <= 1:
            raise ConfigError(f"layer_lr_min: must be in (0, 1], got {self.layer_lr_min}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        self._check_lora()

    def _check_lora(self) -> None:
        if self.peft not in PEFT_METHODS:
            raise ConfigError(f"peft: '{self.peft}' is not one of {', '.join(PEFT_METHODS)}")
        for name in ("lora_r", "lora_alpha"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if self.peft == "lora" and self.attention == "disentangled-flash":
            # its fused encoder reads the query/key/value weights directly, so their adapters would never run
            raise ConfigError("peft lora: use --attention eager (disentangled-flash would bypass the adapters)")

    @property
    def reader(self) -> ReaderSettings:
        """How the trained model reads a question (recorded with each export)."""
        return ReaderSettings(self.input_layout, self.pooling, self.context_select)

    def check_ready(self) -> None:
        """Checks that need the whole configuration (file + flags) before a run starts."""
        if not self.train:
            raise ConfigError("train: no training file; set `train:` in the config or pass --train FILE")


# Settings a resumed run may change: they alter neither what a finished seed learned nor how it was exported.
RESUMABLE = {
    "output_dir",  # a run folder moved elsewhere is still the same run
    "index",  # a moved index is the same index: the run's cached contexts record its fingerprint
    "seeds",
    "valid",
    "max_valid",
    "valid_overlap",
    "eval_batch",
    "eval_per_epoch",
    "logging_steps",
    "report_to",
    "num_workers",
    "keep_checkpoints",
    "save_total_limit",
    "auto_find_batch_size",
    "gradient_checkpointing",
    "attention",
    "evidence",  # the blend is chosen again after the seeds, from their saved validation logits
    "evidence_embedder",
    "evidence_k",
    "evidence_chars",
}


# What a run started before a setting existed did, where that differs from today's default.
LEGACY = {**ReaderSettings.legacy().as_meta()}


def resume_differences(stored: dict, cfg: TrainConfig) -> list[str]:
    """'name: stored -> now' for every setting that a resume must not change. A setting the stored run lacks
    was added since it started: that run did what LEGACY says, else the default (e.g. peft: none)."""
    now = dataclasses.asdict(cfg)
    stored = dataclasses.asdict(TrainConfig()) | LEGACY | stored
    names = sorted((set(stored) | set(now)) - RESUMABLE)
    return [f"{n}: {stored.get(n)!r} -> {now.get(n)!r}" for n in names if stored.get(n) != now.get(n)]
