"""Inference end to end: read the test file, ensemble the models' logits, write a checked submission.

`infer.py` and the Kaggle kernel both call `run_inference`, so what is rehearsed locally is what runs.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcq.core.attention import DEFAULT_ATTENTION, check_supported
from mcq.core.batching import DEFAULT_BATCH_TOKENS
from mcq.core.blend import BlendReport, blend_report
from mcq.core.data import Questions, read_questions
from mcq.core.export import find_model_folders
from mcq.core.metrics import map3_score, mean_logits
from mcq.core.openbook import context_settings, model_retrieval, open_book, open_index_for
from mcq.core.predict import ExportedModel, check_max_length, inspect_models, models_logits
from mcq.core.submission import make_submission, validate_submission, write_submission
from mcq.core.tta import average_rotations, check_rotations, rotation_shifts, stack_rotations
from mcq.errors import ConfigError
from mcq.io import atomic_write_text, write_array

log = logging.getLogger(__name__)

BLEND_FILE = "blend.json"  # beside the submission when the weights were tuned on a validation file
TUNE_FOLDS = 5  # cross-validation folds inside the validation file that decide whether tuned weights are used


@dataclass
class InferResult:
    """What one inference run produced: paths, scores (when the test has answers) and stage timings."""

    submission: Path
    n_questions: int
    models: list[str]
    map3: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tta_rotations: int = 1
    blend: BlendReport | None = None  # with tune_weights: the fitted weights, their cross-validation, the decision


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


def check_tuning(tune_weights: str | Path | None, weights: Sequence[float] | None, n_models: int) -> None:
    """--tune-weights fits the weights itself, so not with --weights, and needs two models to weigh."""
    if tune_weights is None:
        return
    if weights is not None:
        raise ConfigError(
            "--weights and --tune-weights: give one of them; --tune-weights fits the weights on its validation file."
        )
    if n_models < 2:
        raise ConfigError(f"--tune-weights {tune_weights}: one model found; weights need two or more models.")


def read_valid(path: str | Path, n_rotations: int) -> Questions:
    """The --tune-weights file: it needs answers, and enough questions for the cross-validation."""
    valid = read_questions(path, lenient=True)
    if valid.answers is None:
        raise ConfigError(
            f"--tune-weights {path}: no 'answer' column; weights are fitted to known answers. "
            "Give a validation file with the correct letter per row."
        )
    if len(valid) < TUNE_FOLDS:
        raise ConfigError(
            f"--tune-weights {path}: {len(valid)} questions, too few for {TUNE_FOLDS}-fold cross-validation; "
            "give a validation file of a few hundred questions."
        )
    check_rotations(n_rotations, len(valid.letters), str(path))
    return valid


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
    tta_rotations: int = 1,
    tune_weights: str | Path | None = None,
) -> InferResult:
    """Predict with every model, mean-ensemble the logits, save logits and the validated submission.

    With `index`, each question's context is retrieved first, made as the models' own training context was
    (k and context_chars can be raised); max_length overrides the models' own (train short, infer long).
    tta_rotations > 1 averages each model's logits over that many rotations of the options; tune_weights (a
    validation file) fits the ensemble weights on it, used only if they beat equal weights in cross-validation."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    folders = find_model_folders(models)
    check_weights(weights, len(folders), folders)
    check_tuning(tune_weights, weights, len(folders))
    infos = inspect_models(folders, allow_mixed=allow_mixed)
    for info in infos:  # before any model loads: a typo or a non-DeBERTa model fails in a second
        check_supported(attention, info.model_type, str(info.path))
        check_max_length(info, max_length)
    questions = read_questions(test, lenient=True)  # a bad question degrades with a warning, never stops the run
    check_rotations(tta_rotations, len(questions.letters), str(test))
    valid = read_valid(tune_weights, tta_rotations) if tune_weights is not None else None
    recorded = model_retrieval([m.meta for m in infos])
    opened = open_index_for(index, recorded) if index is not None else None
    timings["load_s"] = time.perf_counter() - start
    contextualise = functools.partial(with_context, opened=opened, recorded=recorded, k=k, context_chars=context_chars)
    score = functools.partial(
        predict,
        infos,
        n_rotations=tta_rotations,
        batch_tokens=batch_tokens,
        attention=attention,
        max_length=max_length,
    )

    blend, valid_logits = None, []
    if valid is not None:
        start = time.perf_counter()
        valid_logits = score(contextualise(valid))  # the test's retrieval and rotations: what the weights will meet
        blend = blend_report(
            valid_logits, valid.answers or [], valid.options, _unique_names(infos), TUNE_FOLDS, valid=str(tune_weights)
        )
        log.info("ensemble weights tuned on %s: %s", tune_weights, blend.reason)
        weights = blend.weights
        timings["tune_s"] = time.perf_counter() - start

    start = time.perf_counter()
    questions = contextualise(questions)
    if opened is not None:
        timings["retrieve_s"] = time.perf_counter() - start

    start = time.perf_counter()
    per_model = score(questions, timings=timings)
    timings["predict_s"] = time.perf_counter() - start - timings.get("tokenise_s", 0.0)
    ensemble = mean_logits(per_model, weights).astype(np.float32)

    out = Path(out)
    frame = make_submission(questions.ids, ensemble, questions.letters, questions.options)
    validate_submission(frame, questions.ids, questions.letters)  # before anything is written beside it
    names = _unique_names(infos)
    for name, logits in zip(names, per_model):
        write_array(out.parent / f"logits_{name}.npy", logits)
    write_array(out.parent / "logits_ensemble.npy", ensemble)
    for name, logits in zip(names, valid_logits):
        write_array(out.parent / f"valid_logits_{name}.npy", logits)  # python -m mcq.core.blend reads these
    if blend is not None:
        atomic_write_text(out.parent / BLEND_FILE, blend.to_json())
    write_submission(frame, out, questions.ids, questions.letters)

    result = InferResult(
        out, len(questions), [str(m.path) for m in infos], timings=timings, tta_rotations=tta_rotations, blend=blend
    )
    if questions.answers is not None:
        for name, logits in zip(names + ["ensemble"], per_model + [ensemble]):
            result.map3[name] = map3_score(logits, questions.answers, questions.options)
    return result


def with_context(questions: Questions, opened, recorded: dict | None, k: int | None, context_chars: int | None):
    """The questions with retrieved context when an index is open; a warning when the models expect one."""
    if opened is not None:
        return open_book(questions, opened, context_settings(recorded, k, context_chars))
    if recorded and not (questions.contexts and any(questions.contexts)):
        log.warning(
            "the models were trained with retrieved context (k=%s), but no --index was given and %s has no "
            "context column: they will score closed-book, usually much worse. Pass --index INDEX.",
            recorded.get("k"), questions.source,
        )  # fmt: skip
    return questions


def predict(
    infos: list[ExportedModel],
    questions: Questions,
    n_rotations: int = 1,
    timings: dict | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    attention: str = DEFAULT_ATTENTION,
    max_length: int | None = None,
) -> list[np.ndarray]:
    """Each model's logits, averaged over n_rotations rotations of the options (1: the file's order, as is)."""
    shifts = rotation_shifts(n_rotations, len(questions.letters))
    if len(shifts) > 1:
        log.info("%s: scoring %d rotations of the options (shifts %s)", questions.source, len(shifts), shifts)
    scored = questions if len(shifts) == 1 else stack_rotations(questions, shifts)
    logits = models_logits(infos, scored, batch_tokens, timings=timings, attention=attention, max_length=max_length)
    return logits if len(shifts) == 1 else [average_rotations(x, shifts) for x in logits]


def _unique_names(infos: list[ExportedModel]) -> list[str]:
    """File-safe names for per-model logits: the folder name, prefixed by its parent when names clash."""
    names = [m.path.name for m in infos]
    if len(set(names)) == len(names):
        return names
    return [f"{i}_{m.path.parent.name}_{m.path.name}" for i, m in enumerate(infos)]
