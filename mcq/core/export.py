"""Inference-only model folders: safetensors weights, config, tokenizer files and a metadata file.

A folder is written under a temporary name and renamed into place only when complete, so a crash
never leaves a half-written model where inference would find it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel

from mcq.core.reader import ReaderSettings
from mcq.errors import ModelFolderError
from mcq.io import atomic_write_text, library_versions, replace_dir, umask

log = logging.getLogger(__name__)

META_FILE = "mcq_model.json"
# keys of mcq_model.json beyond export_meta's, written by training and read by inference
BLEND_KEY = "blend"  # the blend with the evidence scores training chose
EXPORT_ID = "export_id"  # which run and seed a model is (a blend names its models by it)
CONTEXT_KEY = "context_source"  # "none" for a model trained closed book (it reads no context)
REQUIRED_FILES = ("config.json", "tokenizer.json", META_FILE)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# Files an exported folder may hold; anything else (optimizer state, checkpoints, credentials) is not ours.
ALLOWED_FILES = (
    set(REQUIRED_FILES)
    | set(WEIGHT_FILES)
    | {
        "tokenizer_config.json",
        "special_tokens_map.json",
        "spm.model",
        "vocab.txt",
        "added_tokens.json",
        "generation_config.json",
        "chat_template.jinja",
    }
)


def stage_export(model: PreTrainedModel, tokenizer, dest: Path, fp16: bool = False) -> Path:
    """Write weights, config and tokenizer into a temporary sibling of `dest` and return its path."""
    dest = Path(dest)
    _remove_leftovers(dest)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    weights: torch.nn.Module = model  # transformers' typing of PreTrainedModel.to rejects a dtype
    dtype = next(weights.parameters()).dtype
    if fp16:
        weights.to(torch.float16)
    try:
        model.save_pretrained(tmp)
    finally:
        weights.to(dtype)
    tokenizer.save_pretrained(tmp)
    if not (tmp / "tokenizer.json").is_file():
        raise ModelFolderError(
            f"{tmp}: the tokenizer wrote no tokenizer.json; Kaggle's transformers 5 needs a fast tokenizer."
        )
    return tmp


def _remove_leftovers(dest: Path) -> None:
    """Staging (`.NAME.tmp-PID`) and replaced (`.NAME.old-PID`) folders of `dest` left by an interrupted
    export, from any process: each can hold a whole model (gigabytes)."""
    if not dest.parent.is_dir():
        return
    for stale in sorted(dest.parent.glob(f".{dest.name}.tmp-*")) + sorted(dest.parent.glob(f".{dest.name}.old-*")):
        log.info("removing %s, left by an interrupted export", stale)
        shutil.rmtree(stale, ignore_errors=True)


def write_meta(folder: Path, meta: dict) -> None:
    """Write (or rewrite) a folder's metadata file atomically."""
    atomic_write_text(Path(folder) / META_FILE, json.dumps(meta, indent=2, sort_keys=True))


def commit_export(tmp: Path, dest: Path, meta: dict) -> Path:
    """Add the metadata file, then move the finished folder into place (replacing an older export)."""
    write_meta(tmp, meta)
    for extra in sorted(p.name for p in tmp.iterdir() if p.name not in ALLOWED_FILES):
        (tmp / extra).unlink() if (tmp / extra).is_file() else shutil.rmtree(tmp / extra)
    for file in tmp.iterdir():  # safetensors writes its file 0600; the folder is shared like any other output
        file.chmod(0o666 & ~umask())
    return replace_dir(tmp, dest)


def export_meta(
    seed: int, max_length: int, letters, backbone: str, reader: ReaderSettings | None = None, **extra
) -> dict:
    """The metadata saved with each exported model (read back by inference and the Kaggle kernel)."""
    reader = reader or ReaderSettings()
    return {
        "seed": seed,
        "max_length": max_length,
        "letters": list(letters),
        "backbone": backbone,
        "reader": reader.as_meta(),
        "input_format": reader.describe(),
        "valid_map3": None,  # set by training once the exported folder is scored
        "versions": library_versions(),
        **extra,
    }


def check_model_folder(path: Path) -> dict:
    """Raise ModelFolderError unless `path` is a complete exported model; return its metadata."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(
            f"{path}: not a folder. Pass the folder that training exported (runs/<run>/models/seedN)."
        )
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("model.safetensors")
    if missing:
        raise ModelFolderError(
            f"{path}: missing {missing}. Re-export it with train.py (a Trainer checkpoint-N folder is not an "
            "exported model), or copy the whole folder."
        )
    meta = _json_object(path / META_FILE)
    max_length = meta.get("max_length")
    if "max_length" not in meta:
        raise ModelFolderError(f"{path / META_FILE}: no 'max_length'; re-export the model (or copy the folder whole).")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length <= 0:
        raise ModelFolderError(f"{path / META_FILE}: 'max_length' must be a positive integer, got {max_length!r}")
    _json_object(path / "config.json")
    _json_object(path / "tokenizer.json")
    check_weights(path)
    return meta


def _json_object(file: Path) -> dict:
    """A JSON file of the folder that must hold an object; a truncated or damaged one names itself."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(
            f"{file}: not valid JSON ({err}); the folder is damaged (an interrupted copy?): copy it again or re-export"
        ) from err
    if not isinstance(value, dict):
        raise ModelFolderError(f"{file}: expected a JSON object, got {type(value).__name__}; re-export the model.")
    return value


def check_weights(path: Path) -> None:
    """Each safetensors file is as long as its header says: a truncated copy is caught before loading."""
    files = [path / "model.safetensors"]
    if not files[0].is_file():
        shards = _json_object(path / "model.safetensors.index.json").get("weight_map", {})
        files = [path / name for name in sorted(set(shards.values()))]
    for file in files:
        problem = _safetensors_problem(file)
        if problem:
            raise ModelFolderError(
                f"{file}: truncated or damaged ({problem}); copy the folder again or re-export the model."
            )


def _safetensors_problem(file: Path) -> str:
    """'' when the file is whole: an 8-byte header length, a JSON header, then exactly the tensors it lists."""
    if not file.is_file():
        return "missing"
    size = file.stat().st_size
    with file.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{size} bytes"
        length = int.from_bytes(head, "little")
        if length > size - 8:
            return f"a {length}-byte header in a {size}-byte file"
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "its header is not valid JSON"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    expected = 8 + length + max(ends, default=0)
    return "" if size == expected else f"{size} bytes where its header says {expected}"


def find_model_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Expand each path: an exported model folder stays, a folder of exported models gives its children
    (hidden ones, leftovers of an interrupted export, are skipped with a warning)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / META_FILE).is_file() or not p.is_dir():
            found.append(p)
            continue
        children = sorted(c for c in p.iterdir() if (c / META_FILE).is_file())
        hidden = [c for c in children if c.name.startswith(".")]
        for c in hidden:  # a staging or replaced folder left by an interrupted export: never a model to use
            log.warning("ignoring %s: left by an interrupted export (delete it)", c)
        children = [c for c in children if c not in hidden]
        found.extend(children or [p])  # an empty or broken folder is reported by check_model_folder
    return found
