"""Shared command-line plumbing: logging set-up and turning our errors into one clear line."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from .attention import AttentionError
from .config import ConfigError
from .data import DataError
from .export import ModelFolderError
from .submission import SubmissionError

USER_ERRORS = (AttentionError, ConfigError, DataError, ModelFolderError, SubmissionError, FileNotFoundError)


def setup_logging() -> None:
    """INFO to stderr for rank 0 only (torchrun prints every rank otherwise)."""
    level = logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file load/save bars; Trainer's own progress bar stays


def main_guard(fn: Callable[[], int | None]) -> int:
    """Run a CLI entry point; a user error prints one 'error:' line and exits 2 instead of a traceback."""
    setup_logging()
    try:
        return fn() or 0
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
