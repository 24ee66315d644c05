"""Inference end to end: read the test file, ensemble the models' logits, write a checked submission.

`infer.py` and the Kaggle kernel both call `run_inference`, so what is rehearsed locally is what runs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .attention import check_supported
from .data import read_questions
from .export import find_model_folders
from .data import Questions
from .metrics import map_at_k, mean_logits, top_k
from .predict import ensemble_logits, inspect_models
from .submission import make_submission, rank_logits, validate_submission, write_array, write_submission

log = logging.getLogger(__name__)


@dataclass
class InferResult:
    """What one inference run produced: paths, scores (when the test has answers) and stage timings."""

    submission: Path
    n_questions: int
    models: list[str]
    map3: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def run_inference(
    models: list[str | Path],
    test: str | Path,
    out: str | Path,
    weights: list[float] | None = None,
    batch_tokens: int = 16384,
    allow_mixed: bool = False,
    attention: str = "eager",
) -> InferResult:
    """Predict with every model, mean-ensemble the logits, save logits and the validated submission."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    folders = find_model_folders(models)
    infos = inspect_models(folders, allow_mixed=allow_mixed)
    for info in infos:  # before any model loads: a typo or a non-DeBERTa model fails in a second
        check_supported(attention, info.model_type, str(info.path))
    if weights is not None and len(weights) != len(infos):
        raise ValueError(f"{len(weights)} weights for {len(infos)} models ({[str(m.path) for m in infos]})")
    questions = read_questions(test)
    timings["load_s"] = time.perf_counter() - start

    start = time.perf_counter()
    per_model = ensemble_logits(infos, questions, batch_tokens=batch_tokens, timings=timings, attention=attention)
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
    if questions.has_answers:
        for name, logits in zip(names + ["ensemble"], per_model + [ensemble]):
            result.map3[name] = score_map3(logits, questions)
    return result


def score_map3(logits: np.ndarray, questions: Questions) -> float:
    """MAP@3 of logits ranked as the submission ranks them (empty options last)."""
    return map_at_k(top_k(rank_logits(logits, questions.options), 3), questions.answers, 3)


def _unique_names(infos) -> list[str]:
    """File-safe names for per-model logits: the folder name, prefixed by its parent when names clash."""
    names = [m.path.name for m in infos]
    if len(set(names)) == len(names):
        return names
    return [f"{i}_{m.path.parent.name}_{m.path.name}" for i, m in enumerate(infos)]
