"""The multiple-choice model: loading, layer groups bottom to top, and freezing for each phase."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForMultipleChoice, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from mcq.core.export import commit_export, export_meta, stage_export
from mcq.errors import ConfigError
from mcq.packages import resolve_model_path  # noqa: F401  (re-exported: mcq.core.model.resolve_model_path)

log = logging.getLogger(__name__)

# Backbone parameters that sit outside the embeddings and the layer stack but feed every layer:
# DeBERTa's shared relative-position table and the norm applied to it. They are placed with the
# embeddings (the bottom group) on purpose; a public solution forgot them and never trained them.
SHARED_INPUT_PARAMS = ("encoder.rel_embeddings", "encoder.LayerNorm")


def load_multiple_choice(path: str) -> PreTrainedModel:
    """The backbone with a new multiple-choice head; says in one line what started random."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers' loading report lists the head as MISSING, which is expected
    try:
        model, info = from_folder_or_hub(AutoModelForMultipleChoice.from_pretrained, path, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    head = set(layer_groups(model)[-1][1])
    missing = sorted(info.get("missing_keys", []))
    fresh = [k for k in missing if k in head]
    backbone = [k for k in missing if k not in head]
    if fresh:
        log.info("new head initialised randomly from %s: %s", path, ", ".join(fresh))
    if backbone:  # a backbone weight that failed to load is not expected, and gets a warning naming it
        log.warning(
            "%s: %d backbone weight(s) were not in the checkpoint and start random (%s%s); "
            "check that --model points at a pretrained backbone.",
            path,
            len(backbone),
            ", ".join(backbone[:5]),
            ", ..." if len(backbone) > 5 else "",
        )
    return model


def load_tokenizer(path: str):
    """The backbone's tokenizer; a name that is neither a folder nor reachable is one clear error."""
    return from_folder_or_hub(AutoTokenizer.from_pretrained, path)


def from_folder_or_hub(load, name: str, **kw):
    """load(name): a name that is no local folder and could not be fetched (offline, unknown) is a ConfigError."""
    try:
        return load(name, **kw)
    except OSError as err:
        if Path(name).is_dir():
            raise  # a real folder that fails to load is not a naming problem: keep the library's message
        raise ConfigError(
            f"model '{name}': no such local folder, and it could not be fetched from the model hub (this machine "
            "is offline or the name is unknown). Pass --model LOCAL_FOLDER (a folder with config.json), or "
            "package:<module> for a model shipped in a Python package."
        ) from err


def export_untrained(
    backbone: str, dest: Path, seed: int = 0, max_length: int = 256, letters: str = "ABCDE", fp16: bool = False
) -> Path:
    """Export a backbone with a fresh, seeded multiple-choice head and no training: a real model folder
    to rehearse the Kaggle kernel, benchmark or test with before any run has finished."""
    path = resolve_model_path(str(backbone))
    torch.manual_seed(seed)
    model = load_multiple_choice(path)
    tmp = stage_export(model, load_tokenizer(path), dest, fp16=fp16)
    return commit_export(tmp, dest, export_meta(seed, max_length, letters, str(backbone)))


def layer_groups(model: PreTrainedModel) -> list[tuple[str, list[str]]]:
    """Parameter names grouped bottom to top: embeddings, layer.0 .. layer.N-1, head; every parameter of the model
    lands in exactly one group."""
    base_prefix = model.base_model_prefix
    base = getattr(model, base_prefix)
    layers = base.encoder.layer
    embeddings: list[str] = []
    per_layer: list[list[str]] = [[] for _ in layers]
    head: list[str] = []
    for name, _ in model.named_parameters():
        if not name.startswith(base_prefix + "."):
            head.append(name)  # classifier, and DeBERTa's pooler which lives outside the backbone
            continue
        inner = name[len(base_prefix) + 1 :]
        if inner.startswith("embeddings.") or inner.startswith(SHARED_INPUT_PARAMS):
            embeddings.append(name)
        elif inner.startswith("encoder.layer."):
            per_layer[int(inner.split(".")[2])].append(name)
        elif inner.startswith("pooler."):
            head.append(name)  # BERT's pooler sits inside the backbone but belongs to the head
        else:  # a backbone parameter we do not know how to place is an error rather than silently left out
            raise ValueError(
                f"layer_groups: parameter '{name}' is neither embeddings, an encoder layer nor the head; "
                "add its prefix to SHARED_INPUT_PARAMS or teach layer_groups where it belongs."
            )
    groups = [("embeddings", embeddings)]
    groups += [(f"layer.{i}", names) for i, names in enumerate(per_layer)]
    groups.append(("head", head))
    return groups


def word_embedding_names(model: PreTrainedModel) -> set[str]:
    """Names of the word-embedding matrix (the one the recipe freezes in phase 2)."""
    weight = model.get_input_embeddings().weight
    return {name for name, p in model.named_parameters() if p is weight}


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
