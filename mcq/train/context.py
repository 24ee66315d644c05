"""Open-book training data: the training and validation questions' contexts, retrieved once per run.

They are cached in the run folder with the fingerprint of the index they came from, so a resumed run
trains its remaining seeds on the very same contexts, and a resume with another index is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from mcq.core.data import Questions
from mcq.core.openbook import has_context, open_book, retrieval_meta, with_contexts
from mcq.errors import ConfigError
from mcq.io import atomic_write_text
from mcq.retrieve.settings import ContextSettings
from mcq.train import distributed
from mcq.train.config import TrainConfig
from mcq.train.layout import RunLayout

log = logging.getLogger(__name__)


def retrieve_for_run(
    cfg: TrainConfig, layout: RunLayout, train: Questions, valid: Questions | None
) -> tuple[Questions, Questions | None, dict | None]:
    """(train, valid, the retrieval meta every exported model records), the contexts as cfg.context_source
    says: retrieved from cfg.index, the files' own (file, or auto without an index), or none (closed book)."""
    if cfg.context_source == "none":
        return _closed(train), _closed(valid) if valid is not None else None, None
    if not cfg.index or cfg.context_source == "file":
        for questions in (train, valid):
            if cfg.context_source == "file" and questions is not None and not has_context(questions):
                raise ConfigError(
                    f"context_source file: {questions.source} has no context column (or it is empty); give files "
                    "with a `context` column, or use context_source auto with an index."
                )
        return train, valid, None
    from mcq.retrieve.index import open_index

    index = open_index(cfg.index)
    settings = ContextSettings(cfg.retrieve_k, cfg.context_chars)
    train = _split(layout, "train", train, index, settings)
    valid = _split(layout, "valid", valid, index, settings) if valid is not None else None
    return train, valid, retrieval_meta(index, settings)


def _closed(questions: Questions) -> Questions:
    if has_context(questions):
        log.info("%s: its context column is ignored (context_source none: closed book)", questions.source)
    return dataclasses.replace(questions, contexts=None)


def _split(layout: RunLayout, split: str, questions: Questions, index, settings: ContextSettings) -> Questions:
    path = layout.contexts(split)
    key = {
        "index_fingerprint": index.fingerprint,
        "questions": questions.fingerprint(),
        "k": settings.k,
        "max_chars": settings.max_chars,
    }
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("index_fingerprint") != index.fingerprint:
            raise ConfigError(
                f"{layout.root}: its {split} contexts were retrieved from index {cached.get('index_fingerprint')}, "
                f"but --index {index.folder} is {index.fingerprint}. Resume with the index the run started with, "
                "or start a new run in another --output-dir."
            )
        if {k: cached.get(k) for k in key} == key:
            log.info("%s: %d %s contexts reused from %s", layout.root, len(questions), split, path)
            return with_contexts(questions, cached["contexts"])
    log.info("retrieving %d passages for %d %s questions from %s", settings.k, len(questions), split, index.folder)
    questions = open_book(questions, index, settings, progress=distributed.is_main())
    if distributed.is_main():
        atomic_write_text(path, json.dumps(key | {"contexts": questions.contexts}, ensure_ascii=False))
    return questions
