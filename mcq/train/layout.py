"""Where a training run keeps each thing: one place that names every path of `runs/<name>/`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mcq.core.export import META_FILE
from mcq.io import folder_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run folder (see docs/ARCHITECTURE.md for what each holds)."""

    root: Path

    @classmethod
    def of(cls, output_dir: str | Path) -> RunLayout:
        return cls(Path(output_dir))

    def seed_dir(self, seed: int) -> Path:
        """Working files of one seed: phase checkpoints, the phase-1 head, validation logits."""
        return self.root / f"seed{seed}"

    def phase_dir(self, seed: int, number: int) -> Path:
        """Trainer checkpoints of phase `number` (1: head only, 2: full), removed once the seed is exported."""
        return self.seed_dir(seed) / f"phase{number}"

    def head_file(self, seed: int) -> Path:
        """The head's weights after phase 1 (a resume skips phase 1 when this exists)."""
        return self.seed_dir(seed) / "head.safetensors"

    def valid_logits(self, seed: int) -> Path:
        return self.seed_dir(seed) / "valid_logits.npy"

    def valid_fingerprint(self, seed: int) -> Path:
        """Questions.fingerprint() of the validation set the logits were computed on."""
        return self.seed_dir(seed) / "valid_logits.fingerprint"

    def contexts(self, split: str) -> Path:
        """Retrieved contexts of the training or validation questions (made once, reused on resume)."""
        return self.root / "retrieval" / f"{split}_contexts.json"

    @property
    def models(self) -> Path:
        """Exported, inference-only models: what goes to Kaggle."""
        return self.root / "models"

    def export_dir(self, seed: int) -> Path:
        return self.models / f"seed{seed}"

    def export_meta(self, seed: int) -> Path:
        return self.export_dir(seed) / META_FILE

    def valid_evidence(self, kind: str) -> Path:
        """A validation evidence score (lexical, dense) the blend was chosen with."""
        return self.root / f"valid_evidence_{kind}.npy"

    @property
    def ensemble_logits(self) -> Path:
        return self.root / "valid_logits_ensemble.npy"

    @property
    def config(self) -> Path:
        """The settings the run started with (a resume is compared against them)."""
        return self.root / "run_config.json"

    @property
    def data_fingerprint(self) -> Path:
        """The fingerprint of the training questions the run started with (a resume must train on the same)."""
        return self.root / "train_data.fingerprint"

    @property
    def lock_file(self) -> Path:
        """Held while a training runs here: PID and host of the holder."""
        return self.root / ".lock"

    def seed_report(self, seed: int) -> Path:
        """A finished seed's part of the report (kept for the report of a resumed run)."""
        return self.seed_dir(seed) / "seed_report.json"

    def started(self, seeds: list[int]) -> bool:
        """Whether any of these seeds has begun here (a new run would overwrite it)."""
        return any(self.seed_dir(s).exists() for s in seeds)


@contextlib.contextmanager
def run_lock(layout: RunLayout) -> Iterator[None]:
    """Hold the run folder for one training: a second start into it exits at once naming the holder; a lock
    left by a process that died is taken over with a warning."""
    created = not layout.root.exists()
    try:
        with folder_lock(layout.lock_file, "a training run", "wait for it to finish, or choose another --output-dir"):
            yield
    finally:
        if created and layout.root.is_dir() and not any(layout.root.iterdir()):
            layout.root.rmdir()  # a run stopped before writing anything leaves no folder behind
