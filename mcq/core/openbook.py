"""Open book for a question set: retrieve each question's context from an index (mcq.retrieve) and
record, with each exported model, how its context was made so inference can make it the same way."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from mcq.core.data import Questions
from mcq.errors import ConfigError, IndexMismatchError
from mcq.retrieve.settings import ContextSettings

log = logging.getLogger(__name__)

META_KEY = "retrieval"  # the key of mcq_model.json that holds a model's retrieval settings


def has_context(questions: Questions) -> bool:
    """Whether any question of the set has context to read."""
    return questions.contexts is not None and any(questions.contexts)


def with_contexts(questions: Questions, contexts: list[str]) -> Questions:
    if len(contexts) != len(questions):
        raise ValueError(f"{len(contexts)} contexts for {len(questions)} questions")
    return dataclasses.replace(questions, contexts=list(contexts))


def open_book(questions: Questions, index, settings: ContextSettings, progress: bool = False) -> Questions:
    """The questions with `context` retrieved from `index` (an open mcq.retrieve Index), replacing any."""
    from mcq.retrieve.context import retrieve_contexts

    if questions.contexts is not None and any(questions.contexts):
        log.info("%s: its context column is replaced by retrieved passages (index %s)", questions.source, index.folder)
    contexts = retrieve_contexts(index, questions.prompts, questions.options, settings, progress=progress)
    return with_contexts(questions, contexts)


def retrieval_meta(index, settings: ContextSettings) -> dict:
    """What a model records about its training context (mcq_model.json 'retrieval')."""
    return {
        "index_fingerprint": index.fingerprint,
        "index_settings": index.manifest["settings"],
        "passages": index.manifest["passages"],
        "k": settings.k,
        "max_chars": settings.max_chars,
    }


def model_retrieval(metas: list[dict]) -> dict | None:
    """The retrieval settings the models were trained with (the first model's when they differ, with a warning)."""
    found = [m.get(META_KEY) for m in metas]
    trained = [r for r in found if r]
    if not trained:
        return None
    if len(trained) != len(found) or any(_same(r) != _same(trained[0]) for r in trained):
        log.warning("the models were trained with different retrieval settings; using the first one's: %s", trained[0])
    return trained[0]


def _same(r: dict) -> tuple:
    from mcq.retrieve.index import settings_from_dict

    settings = r.get("index_settings")
    return r.get("k"), r.get("max_chars"), None if settings is None else settings_from_dict(settings)


def context_settings(recorded: dict | None, k: int | None, max_chars: int | None) -> ContextSettings:
    """k and max_chars: the flags when given (raise them at inference: train short, infer long), else the
    models' own, else the defaults."""
    default = ContextSettings()
    recorded = recorded or {}
    return ContextSettings(
        k=k or int(recorded.get("k", default.k)),
        max_chars=max_chars or int(recorded.get("max_chars", default.max_chars)),
    )


def open_index_for(path: str | Path, recorded: dict | None):
    """Open the index; one built with other passage or retriever settings than the models' is refused."""
    from mcq.retrieve.index import open_index, settings_from_dict

    trained = recorded.get("index_settings") if recorded else None
    try:  # compared as settings: a key added since the models were trained counts at its default
        index = open_index(path, expect=None if trained is None else settings_from_dict(trained))
    except IndexMismatchError as err:
        raise ConfigError(
            f"--index {path}: built with {err.differences}, where 'asked' is what the models' context was made with. "
            "Build the index with the models' settings (mcq-retrieve build ...) so their context is made the same way."
        ) from err
    if recorded and recorded.get("index_fingerprint") != index.fingerprint:
        log.info(
            "index %s (%d passages) is not the one the models were trained with (%s, %s passages); same settings",
            path, len(index), recorded.get("index_fingerprint"), recorded.get("passages"),
        )  # fmt: skip
    return index
