"""Inference end to end: check everything, score with the models and/or the evidence, blend, write a checked
submission.

`infer.py` and the Kaggle kernel both build an `InferConfig` and call `run_inference`, so what is rehearsed
locally is what runs:

    InferConfig.check() -> Plan -> [tune weights] -> context -> model logits, evidence scores -> blend -> files
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcq.core.blend import BlendReport, MemberBlend, blend_report
from mcq.core.data import Questions
from mcq.core.metrics import map3_score, mean_logits
from mcq.core.predict import ExportedModel, models_logits
from mcq.infer.config import InferConfig
from mcq.infer.plan import TUNE_FOLDS, Plan
from mcq.infer.submission import make_submission, validate_submission, write_submission
from mcq.infer.tta import average_rotations, rotation_shifts, stack_rotations
from mcq.io import atomic_write_text, write_array

log = logging.getLogger(__name__)

BLEND_FILE = "blend.json"  # beside the submission when the weights were tuned on a validation file
RECORD_FILE = "inference.json"  # beside the submission, written last: which files belong to this run


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
    member_blend: MemberBlend | None = None  # the models' recorded blend with the evidence scores, when applied
    reader: str = "models"


class Stopwatch:
    """Seconds per stage, added up."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


def run_inference(cfg: InferConfig) -> InferResult:
    """Score the test file as `cfg` says and write the submission beside the logits; every check first."""
    clock = Stopwatch()
    with clock("load_s"):
        plan = cfg.check()
    weights, tuned = cfg.weights, None
    valid_logits: list[np.ndarray] = []
    if plan.valid is not None:
        with clock("tune_s"):
            tuned, valid_logits = tune_weights(plan, plan.valid)
        weights = tuned.weights
    with clock("retrieve_s"):
        questions = plan.contextualise(plan.questions)
    members: dict[str, np.ndarray] = {}
    per_model: list[np.ndarray] = []
    if plan.models:
        with clock("predict_s"):
            per_model = predict(plan, questions, clock.timings)
        members["models"] = mean_logits(per_model, weights).astype(np.float32)
    with clock("evidence_s"):
        members |= plan.evidence_scores(questions)
    final = plan.combine(members, questions.options).astype(np.float32)
    result = write_outputs(plan, questions, per_model, members, final, (tuned, valid_logits))
    result.timings = _stages(clock.timings, plan)
    return result


def tune_weights(plan: Plan, valid: Questions) -> tuple[BlendReport, list[np.ndarray]]:
    """Ensemble weights fitted on the validation file, scored as the test will be (its retrieval, rotations)."""
    logits = predict(plan, plan.contextualise(valid))
    names = unique_names(plan.models)
    report = blend_report(logits, valid.answers or [], valid.options, names, TUNE_FOLDS, valid=str(valid.source))
    log.info("ensemble weights tuned on %s: %s", valid.source, report.reason)
    return report, logits


def predict(plan: Plan, questions: Questions, timings: dict | None = None) -> list[np.ndarray]:
    """Each model's logits, averaged over the configured rotations of the options (1: the file's order)."""
    cfg = plan.cfg
    shifts = rotation_shifts(cfg.tta_rotations, len(questions.letters))
    if len(shifts) > 1:
        log.info("%s: scoring %d rotations of the options (shifts %s)", questions.source, len(shifts), shifts)
    scored = questions if len(shifts) == 1 else stack_rotations(questions, shifts)
    logits = models_logits(
        plan.models, scored, cfg.batch_tokens, timings=timings, attention=cfg.attention, max_length=cfg.max_length
    )
    return logits if len(shifts) == 1 else [average_rotations(x, shifts) for x in logits]


def write_outputs(
    plan: Plan,
    questions: Questions,
    per_model: list[np.ndarray],
    members: dict[str, np.ndarray],
    final: np.ndarray,
    tuning: tuple[BlendReport | None, list[np.ndarray]],
) -> InferResult:
    """The validated submission and, beside it, every model's logits, the ensemble, the evidence and the blend
    (the submission last)."""
    out = Path(plan.cfg.out)
    tuned, valid_logits = tuning
    frame = make_submission(questions.ids, final, questions.letters, questions.options)
    validate_submission(frame, questions.ids, questions.letters)  # before anything is written beside it
    names = unique_names(plan.models)
    arrays = {f"logits_{n}": x for n, x in zip(names, per_model)} | {
        f"valid_logits_{n}": x for n, x in zip(names, valid_logits)
    }
    if "models" in members:
        arrays["logits_ensemble"] = members["models"]
    arrays |= {f"evidence_{k}": x for k, x in members.items() if k != "models"}
    if len(members) > 1 or "models" not in members:
        arrays["logits_blend"] = final
    (out.parent / RECORD_FILE).unlink(missing_ok=True)  # from here until the new record, no pair is vouched for
    for name, array in arrays.items():
        write_array(out.parent / f"{name}.npy", array)  # python -m mcq.core.blend reads valid_logits_*
    if tuned is not None:
        atomic_write_text(out.parent / BLEND_FILE, tuned.to_json())
    write_submission(frame, out, questions.ids, questions.letters)
    written = [out.parent / f"{n}.npy" for n in arrays] + ([out.parent / BLEND_FILE] if tuned else []) + [out]
    atomic_write_text(out.parent / RECORD_FILE, json.dumps(record(plan, written), indent=2, default=str))
    result = InferResult(
        out, len(questions), [str(m.path) for m in plan.models], tta_rotations=plan.cfg.tta_rotations,
        blend=tuned, member_blend=plan.blend, reader=plan.cfg.reader,
    )  # fmt: skip
    if questions.answers is not None:
        scored = dict(zip(names, per_model)) | {("ensemble" if k == "models" else k): x for k, x in members.items()}
        if "logits_blend" in arrays:
            scored["blend"] = final
        result.map3 = {name: map3_score(x, questions.answers, questions.options) for name, x in scored.items()}
    return result


def record(plan: Plan, written: list[Path]) -> dict:
    """inference.json, written last: these files (by checksum) came from one run with these settings. A run
    killed part-way leaves no record beside files of two runs."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in written}
    settings = dataclasses.asdict(plan.cfg)
    return {"files": files, "settings": settings, "models": [str(m.path) for m in plan.models]}


def _stages(timings: dict[str, float], plan: Plan) -> dict[str, float]:
    """The stages that ran; predict_s without its tokenising (reported on its own)."""
    out = {k: v for k, v in timings.items() if k in ("load_s", "tune_s", "tokenise_s", "forward_s")}
    if plan.index is not None:
        out["retrieve_s"] = timings["retrieve_s"]
    if "predict_s" in timings:
        out["predict_s"] = timings["predict_s"] - timings.get("tokenise_s", 0.0)
    if plan.evidence:
        out["evidence_s"] = timings["evidence_s"]
    return out


def unique_names(infos: list[ExportedModel]) -> list[str]:
    """File-safe names for per-model logits: the folder name, prefixed by its parent when names clash."""
    names = [m.path.name for m in infos]
    if len(set(names)) == len(names):
        return names
    return [f"{i}_{m.path.parent.name}_{m.path.name}" for i, m in enumerate(infos)]
