"""One base for every error a user can fix: the command-line guard prints these as one line.

Anything else that escapes a command is a bug and keeps its traceback.
"""

from __future__ import annotations


class McqError(Exception):
    """A problem the user can fix; the message names the file, row or flag and says what to do."""

    exit_code = 2
    label = "error"


class ConfigError(McqError, ValueError):
    """A configuration file or flag that cannot be used; the message says which key and why."""


class DataError(McqError, ValueError):
    """A question file that cannot be used as it is; the message says where and what to do."""


class ModelFolderError(McqError, ValueError):
    """An exported model folder that inference cannot use; the message says what is missing and what to do."""


class OutputError(McqError, OSError):
    """An output that could not be written (disk full, read-only folder); what was there before is kept."""


class SubmissionError(McqError, ValueError):
    """A submission that Kaggle would reject or score wrongly; nothing is written."""


class AttentionError(McqError, ValueError):
    """An attention choice that cannot run here; the message says why and what to use instead."""


class KaggleSetupError(McqError, ValueError):
    """Bad names, missing credentials or files: caught before anything is staged or uploaded."""


class KaggleCommandError(McqError, RuntimeError):
    """The kaggle CLI or Kaggle reported a failure (including the ones the CLI exits 0 on)."""

    exit_code = 1


class RehearsalError(McqError, RuntimeError):
    """The rehearsal found a problem Kaggle would hit: the kernel failed, reached the network or wrote a bad file."""

    exit_code = 1
    label = "rehearsal FAILED"


class RetrievalError(McqError, ValueError):
    """A corpus, index or retrieval setting that cannot be used; the message names the file, row or setting."""


class GenerateError(McqError, RuntimeError):
    """What stops a generation run: unusable settings or inputs, or a server that refuses every request."""


class IndexMismatchError(RetrievalError):
    """An index built with other settings than those asked for; `differences` names each one."""

    def __init__(self, message: str, differences: str):
        super().__init__(message)
        self.differences = differences
