"""Where a training run keeps each thing: one place that names every path of `runs/<name>/`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcq.core.export import META_FILE


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

    @property
    def models(self) -> Path:
        """Exported, inference-only models: what goes to Kaggle."""
        return self.root / "models"

    def export_dir(self, seed: int) -> Path:
        return self.models / f"seed{seed}"

    def export_meta(self, seed: int) -> Path:
        return self.export_dir(seed) / META_FILE

    @property
    def ensemble_logits(self) -> Path:
        return self.root / "valid_logits_ensemble.npy"

    def started(self, seeds: list[int]) -> bool:
        """Whether any of these seeds has begun here (a new run would overwrite it)."""
        return any(self.seed_dir(s).exists() for s in seeds)
