"""InferConfig: every setting of an inference run; `infer.py`'s flags and the Kaggle kernel's knobs are built
from it, and `check()` runs every check once, before any model runs.

Kept free of heavy imports, so `infer.py --help` answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcq.cli import non_negative_float, positive_int
from mcq.config import help_field
from mcq.core.attention import ATTENTION, DEFAULT_ATTENTION
from mcq.core.batching import DEFAULT_BATCH_TOKENS
from mcq.errors import ConfigError

if TYPE_CHECKING:
    from mcq.infer.plan import Plan

READERS = ("models", "evidence")
MIN_MAX_LENGTH = 16  # fewer tokens cannot hold a prompt, an option and the special tokens


def max_length_flag(text: str) -> int:
    """argparse type: a max_length that can hold a question at all."""
    import argparse

    value = int(text)
    if value < MIN_MAX_LENGTH:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_MAX_LENGTH} (tokens of a prompt, an option and the separators), got {text}"
        )
    return value


BLENDS = ("recorded", "off")
EVIDENCE_KINDS = ("lexical", "dense")


@dataclass
class InferConfig:
    """What to score, with what, and where the submission goes."""

    models: list[str] = help_field(
        [], "exported model folders, or folders holding several (none with --reader evidence)", {"metavar": "FOLDER"}
    )
    test: str = help_field(
        "", "question file (id,prompt,A..E[,answer]); with answers MAP@3 is printed", {"required": True}
    )
    out: str = help_field("submission.csv", "submission path; logits .npy files are written beside it")
    reader: str = help_field(
        "models",
        "models: the trained models, blended with evidence scores when they recorded a blend; evidence: no "
        "model at all, the evidence scores of each question's context alone (needs --index or a context column)",
        {"choices": READERS},
    )
    weights: list[float] | None = help_field(
        None, "one weight per model for the logit mean (default equal)", {"type": non_negative_float}
    )
    tune_weights: str | None = help_field(
        None,
        "fit the ensemble weights on this validation file (with answers); they are used only if they beat equal "
        "weights in cross-validation inside it (report: blend.json beside --out)",
        {"metavar": "VALID"},
    )
    batch_tokens: int = help_field(
        DEFAULT_BATCH_TOKENS, "padded tokens per forward pass (lower it on OOM)", {"type": positive_int}
    )
    attention: str = help_field(
        DEFAULT_ATTENTION,
        "DeBERTa attention: disentangled-flash runs fused Triton kernels on CUDA (pip install disentangled-flash)",
        {"choices": ATTENTION},
    )
    allow_mixed: bool = help_field(False, "allow models with different tokenizers, max_length or input layouts")
    tta_rotations: int = help_field(
        1,
        "average each model's logits over N rotations of the options (1 to the number of options; N times the "
        "prediction time)",
        {"type": positive_int},
    )
    # open book: the models' own retrieval settings unless given
    index: str | None = help_field(None, "index folder (mcq-retrieve build): retrieve each question's context")
    k: int | None = help_field(
        None, "passages per question (default: what the models trained with)", {"type": positive_int}
    )
    context_chars: int | None = help_field(
        None, "characters of context at most (default: the models')", {"type": positive_int}
    )
    max_length: int | None = help_field(
        None, "tokens per pair (default: the models' own; raise it for longer context)", {"type": max_length_flag}
    )
    blend: str = help_field(
        "recorded",
        "recorded: blend the models with the evidence scores by the weights training chose on its validation set "
        "(mcq_model.json 'blend'; models without one score alone); off: the models alone",
        {"choices": BLENDS},
    )
    evidence: list[str] = help_field(
        [],
        "--reader evidence: which scores, of lexical and dense (default: lexical, and dense when the index has an "
        "embedder or --evidence-embedder is given)",
        {"choices": EVIDENCE_KINDS},
    )
    evidence_embedder: str | None = help_field(
        None,
        "a local sentence-transformers folder (or package:<module>) for dense evidence, where the index has no "
        "embedder (BM25, TF-IDF) or to replace it",
        {"metavar": "FOLDER"},
    )

    def __post_init__(self):
        for name, allowed in (("reader", READERS), ("blend", BLENDS), ("attention", ATTENTION)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name} {getattr(self, name)}: not one of {', '.join(allowed)}")
        unknown = sorted(set(self.evidence) - set(EVIDENCE_KINDS))
        if unknown:
            raise ConfigError(f"--evidence {' '.join(unknown)}: not one of {', '.join(EVIDENCE_KINDS)}")
        if self.evidence and self.reader != "evidence":
            raise ConfigError("--evidence: chooses the scores of --reader evidence; the models' blend records its own")
        for name in ("batch_tokens", "tta_rotations", "k", "context_chars", "max_length"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: must be a positive integer")
        if self.max_length is not None and self.max_length < MIN_MAX_LENGTH:
            raise ConfigError(f"--max-length {self.max_length}: must be at least {MIN_MAX_LENGTH}")

    def check(self) -> Plan:
        """Every check, once, before any model runs: the flags together, the model folders, the question files,
        the index and the recorded blend. Returns what they read and opened."""
        from mcq.infer.plan import plan_inference

        return plan_inference(self)
