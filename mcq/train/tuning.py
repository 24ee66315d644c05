"""How phase 2 trains: the whole backbone (full fine-tuning) or low-rank adapters (LoRA, mcq.train.lora).

One small interface, chosen once per run (`tuning_for`): the seed's run, the freezing of each phase, the LR
derivation and the export ask it, and the optimizer only receives the layer groups it gives, so nothing else
needs to know which tuning runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from mcq.core.model import layer_groups, word_embedding_names

if TYPE_CHECKING:
    from mcq.train.config import TrainConfig
    from mcq.train.phases import Phase


class FullTuning:
    """Every weight trains in phase 2 but the word embeddings when they are frozen; phase 1 trains the head."""

    name = "none"

    def check(self, model_path: str) -> None:
        """What must hold before any data is read (nothing, here)."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as Trainer gets it."""
        return model

    def layer_groups(self, model: nn.Module) -> list[tuple[str, list[str]]]:
        """Parameter names bottom to top (embeddings, each layer, head): the optimizer's groups."""
        return layer_groups(model)  # type: ignore[arg-type]

    def head_names(self, model: nn.Module) -> set[str]:
        """What phase 1 trains and saves."""
        return set(self.layer_groups(model)[-1][1])

    def trained_names(self, model: nn.Module, phase: Phase) -> set[str]:
        """What a phase trains."""
        if phase.name == "head":
            return self.head_names(model)
        frozen = word_embedding_names(model) if phase.freeze_word_embeddings else set()  # type: ignore[arg-type]
        return {name for name, _ in model.named_parameters() if name not in frozen}

    def words_frozen(self, phase: Phase) -> bool:
        return phase.freeze_word_embeddings

    def counts(self, model: nn.Module) -> tuple[int, int]:
        """(total, trainable) parameters."""
        return (
            sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.parameters() if p.requires_grad),
        )

    def for_export(self, model: nn.Module) -> tuple[nn.Module, dict]:
        """(the model to export, what mcq_model.json records about the tuning)."""
        return model, {}


FULL = FullTuning()


def tuning_for(cfg: TrainConfig) -> FullTuning:
    """The run's tuning, chosen once from `peft`."""
    if cfg.peft == "lora":
        from mcq.train.lora import LoraTuning

        return LoraTuning(cfg)
    return FULL
