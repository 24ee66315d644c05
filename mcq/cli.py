"""What every command shares: logging set-up, argument types checked at parse time, and the one guard
that turns a user error (McqError) into one line and its exit code; any other exception is a bug and
keeps its traceback."""

from __future__ import annotations

import argparse
import gc
import logging
import math
import sys
from collections.abc import Callable

from mcq.errors import McqError


def setup_logging(main_process: bool = True) -> None:
    """INFO to stderr (WARNING on the other torchrun ranks, which would print everything again)."""
    level = logging.INFO if main_process else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def quiet_transformers() -> None:
    """No per-file load/save progress bars from transformers (Trainer's own progress bar stays)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def freeze_imports() -> None:
    """Hide what the imports made from the garbage collector: accelerate runs a full gc.collect() at every
    Trainer.train(), which would walk all of torch's and transformers' objects each time (a small torchrun
    takes 0.71 of the CPU time with this, docs/BENCHMARKS.md). Collected first: no garbage is kept for good."""
    gc.collect()
    gc.freeze()


def main_guard(fn: Callable[[], int | None]) -> int:
    """Run a command; an McqError prints one '<label>: message' line and returns its exit code."""
    try:
        return fn() or 0
    except McqError as err:
        print(f"{err.label}: {err}", file=sys.stderr)
        return err.exit_code


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def share(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value
