"""Ablation variants: named sets of TrainConfig overrides, built in or defined in YAML.

Every variant trains on the same data, seeds and number of steps as the others, so the settings that decide
those cannot be overridden; everything else (freezing, LR shape, phases, LoRA, the LR itself) can.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from mcq.config import read_yaml, typed_values
from mcq.errors import ConfigError
from mcq.train.config import TrainConfig


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict = field(default_factory=dict)
    about: str = ""


BUILTIN = {
    v.name: v
    for v in (
        Variant(
            "full",
            {"freeze_word_embeddings": False, "layer_lr_shape": "constant"},
            "plain fine-tuning: every weight trains at the top LR",
        ),
        Variant(
            "frozen",
            {"freeze_word_embeddings": True, "layer_lr_shape": "constant"},
            "word embeddings frozen, one LR for every layer",
        ),
        Variant("recipe", {}, "the configuration as written"),
        Variant("geometric", {"layer_lr_shape": "geometric"}, "ULMFiT's geometric layer-wise LRs instead"),
        Variant(
            "mean-lr",
            {"layer_lr_norm": "mean"},
            "the recipe with its top LR raised so that the LR averaged over the trainable parameters is the set one",
        ),
        Variant("no-warmup", {"head_steps": 0}, "no head-only phase: the random head trains with the backbone"),
        Variant("lora", {"peft": "lora"}, "LoRA adapters and the head train; the backbone stays frozen"),
    )
}

# what every variant shares: the same questions, seeds and steps, in its own folder under the ablation's.
# How a question's context is made (context_source, index, retrieve_k, context_chars) may differ: closed
# against open book, or gold against retrieved passages, is a comparison on the same questions.
FIXED = (
    "train",
    "extra_train",
    "valid",
    "max_train",
    "max_valid",
    "max_length",
    "seeds",
    "epochs",
    "max_steps",
    "per_device_batch",
    "grad_accum",
    "output_dir",
)
OUTPUTS = ("ablation.md", "ablation.json", "ablation.png")  # written beside the variants' folders
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def read_variants(path: str | Path) -> dict[str, Variant]:
    """User variants from YAML: `name: {key: value, ...}` (an `about:` key is a description, not a setting)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--define {path}: file not found")
    data = read_yaml(path) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: expected `variant-name: {{setting: value, ...}}` entries at the top level")
    out = {}
    for name, values in data.items():
        values = dict(values)
        about = str(values.pop("about", ""))
        out[str(name)] = check_variant(Variant(str(name), values, about), str(path))
    return out


def check_variant(variant: Variant, where: str = "built-in") -> Variant:
    """A variant's name is a folder name, and its keys are TrainConfig settings other than the shared ones."""
    if variant.name in OUTPUTS:
        raise ConfigError(f"{where}: variant name '{variant.name}' is the ablation's own output file; rename it")
    if not NAME.match(variant.name):
        raise ConfigError(f"{where}: variant name '{variant.name}' must be letters, digits, '-', '_' or '.'")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(variant.overrides) - known)
    if unknown:
        raise ConfigError(f"{where}: variant '{variant.name}' sets unknown key(s) {unknown}; use TrainConfig keys.")
    shared = sorted(set(variant.overrides) & set(FIXED))
    if shared:
        raise ConfigError(
            f"{where}: variant '{variant.name}' sets {shared}, which every variant shares (same data, seeds and "
            "steps); set them in the base config or on the command line instead."
        )
    return variant


def choose(names: list[str], defined: dict[str, Variant]) -> list[Variant]:
    """The variants asked for, in order: user definitions win over built-ins of the same name."""
    if not names:
        raise ConfigError("--variants: no variant named; give comma-separated names (e.g. full,recipe), see --list")
    table = BUILTIN | defined
    missing = [n for n in names if n not in table]
    if missing:
        raise ConfigError(f"--variants: unknown variant(s) {missing}; known: {sorted(table)} (or define them in YAML)")
    if len(set(names)) != len(names):
        raise ConfigError(f"--variants: a variant is listed twice in {names}")
    return [check_variant(table[n]) for n in names]


def variant_config(base: TrainConfig, variant: Variant, root: Path) -> TrainConfig:
    """The base config with the variant's overrides (typed as YAML values are), training in root/<name>."""
    overrides = typed_values(TrainConfig, variant.overrides, f"variant '{variant.name}'")
    try:
        return dataclasses.replace(base, **overrides, output_dir=str(root / variant.name))
    except (TypeError, ConfigError) as err:
        raise ConfigError(f"variant '{variant.name}': {err}") from err
