"""Inference end to end: read the test file, ensemble the models' logits, write a checked submission.

`infer.py` and the Kaggle kernel both call `run_inference`, so what is rehearsed locally is what runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcq.core.attention import DEFAULT_ATTENTION, check_supported
from mcq.core.batching import DEFAULT_BATCH_TOKENS
from mcq.core.data import read_questions
from mcq.core.export import find_model_folders
from mcq.core.metrics import map3_score, mean_logits
from mcq.core.openbook import context_settings, model_retrieval, open_book, open_index_for
from mcq.core.predict import ExportedModel, check_max_length, inspect_models, models_logits
from mcq.core.submission import make_submission, validate_submission, write_submission
from mcq.errors import ConfigError
from mcq.io import write_array

log = logging.getLogger(__name__)


@dataclass
class InferResult:
    """What one inference run produced: paths, scores (when the test has answers) and stage timings."""

    submission: Path
    n_questions: int
    models: list[str]
    map3: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def check_weights(weights: Sequence[float] | None, n_models: int, models: Sequence[object] = ()) -> None:
    """One finite, non-negative weight per model with a positive sum (before any model loads)."""
    if weights is None:
        return
    if len(weights) != n_models:
        raise ConfigError(
            f"--weights: {len(weights)} weights for {n_models} models {[str(m) for m in models]}; "
            "give one weight per model folder, in the order listed."
        )
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"--weights: need finite non-negative weights with a positive sum, got {list(weights)}")


def run_inference(
    models: Sequence[str | Path],
    test: str | Path,
    out: str | Path,
    weights: list[float] | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    allow_mixed: bool = False,
    attention: str = DEFAULT_ATTENTION,
    index: str | Path | None = None,
    k: int | None = None,
    context_chars: int | None = None,
    max_length: int | None = None,
) -> InferResult:
    """Predict with every model, mean-ensemble the logits, save logits and the validated submission.

    With `index`, each question's context is retrieved first, made as the models' own training context was
    (k and context_chars can be raised); max_length overrides the models' own (train short, infer long)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    folders = find_model_folders(models)
    check_weights(weights, len(folders), folders)
    infos = inspect_models(folders, allow_mixed=allow_mixed)
    for info in infos:  # before any model loads: a typo or a non-DeBERTa model fails in a second
        check_supported(attention, info.model_type, str(info.path))
        check_max_length(info, max_length)
    recorded = model_retrieval([m.meta for m in infos])
    opened = open_index_for(index, recorded) if index is not None else None
    questions = read_questions(test, lenient=True)  # a bad question degrades with a warning, never stops the run
    timings["load_s"] = time.perf_counter() - start

    if opened is not None:
        start = time.perf_counter()
        questions = open_book(questions, opened, context_settings(recorded, k, context_chars))
        timings["retrieve_s"] = time.perf_counter() - start
    elif recorded and not (questions.contexts and any(questions.contexts)):
        log.warning(
            "the models were trained with retrieved context (k=%s), but no --index was given and %s has no "
            "context column: they will score closed-book, usually much worse. Pass --index INDEX.",
            recorded.get("k"), test,
        )  # fmt: skip

    start = time.perf_counter()
    per_model = models_logits(
        infos, questions, batch_tokens=batch_tokens, timings=timings, attention=attention, max_length=max_length
    )
    timings["predict_s"] = time.perf_counter() - start - timings.get("tokenise_s", 0.0)
    ensemble = mean_logits(per_model, weights).astype(np.float32)

    out = Path(out)
    frame = make_submission(questions.ids, ensemble, questions.letters, questions.options)
    validate_submission(frame, questions.ids, questions.letters)  # before anything is written beside it
    names = _unique_names(infos)
    for name, logits in zip(names, per_model):
        write_array(out.parent / f"logits_{name}.npy", logits)
    write_array(out.parent / "logits_ensemble.npy", ensemble)
    write_submission(frame, out, questions.ids, questions.letters)

    result = InferResult(out, len(questions), [str(m.path) for m in infos], timings=timings)
    if questions.answers is not None:
        for name, logits in zip(names + ["ensemble"], per_model + [ensemble]):
            result.map3[name] = map3_score(logits, questions.answers, questions.options)
    return result


def _unique_names(infos: list[ExportedModel]) -> list[str]:
    """File-safe names for per-model logits: the folder name, prefixed by its parent when names clash."""
    names = [m.path.name for m in infos]
    if len(set(names)) == len(names):
        return names
    return [f"{i}_{m.path.parent.name}_{m.path.name}" for i, m in enumerate(infos)]
