"""An inference run's plan: every check of InferConfig made once, and what those checks read and opened (the
model folders, the questions, the index, the recorded blend, the evidence scorer), before any model runs."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcq.core.attention import check_supported
from mcq.core.blend import MemberBlend, blend_members
from mcq.core.data import Questions, read_questions
from mcq.core.evidence import EvidenceScorer, scorer_for
from mcq.core.export import BLEND_KEY, CONTEXT_KEY, EXPORT_ID, find_model_folders
from mcq.core.openbook import context_settings, has_context, model_retrieval, open_book, open_index_for
from mcq.core.predict import ExportedModel, check_max_length, inspect_models
from mcq.errors import ConfigError
from mcq.infer.config import InferConfig
from mcq.infer.tta import check_rotations
from mcq.retrieve.settings import EVIDENCE_CHARS, EVIDENCE_K, ContextSettings

log = logging.getLogger(__name__)

TUNE_FOLDS = 5  # cross-validation folds inside the validation file that decide whether tuned weights are used


@dataclass
class Plan:
    """What the checks read and opened; `contextualise` and `evidence_scores` use it without checking again."""

    cfg: InferConfig
    models: list[ExportedModel]
    questions: Questions
    valid: Questions | None = None
    recorded: dict | None = None  # the models' retrieval settings
    index: object | None = None  # an open mcq.retrieve Index
    blend: MemberBlend | None = None
    scorer: EvidenceScorer | None = None
    evidence: list[str] = field(default_factory=list)  # the evidence scores to compute

    @property
    def closed_book(self) -> bool:
        """The models were trained with no context: they read none (the evidence may still read some)."""
        return bool(self.models) and all(m.meta.get(CONTEXT_KEY) == "none" for m in self.models)

    def contextualise(self, questions: Questions) -> Questions:
        """The questions as the models read them: with retrieved context when an index is open (a warning when
        the models expect one and there is none), without any for models trained closed book."""
        if self.closed_book:
            return dataclasses.replace(questions, contexts=None)
        if not self.models:
            return questions  # the evidence reader retrieves for itself
        if self.index is not None:
            settings = context_settings(self.recorded, self.cfg.k, self.cfg.context_chars)
            return open_book(questions, self.index, settings)
        if self.recorded and not has_context(questions):
            log.warning(
                "the models were trained with retrieved context (k=%s), but no --index was given and %s has no "
                "context column: they will score closed-book, usually much worse. Pass --index INDEX.",
                self.recorded.get("k"), questions.source,
            )  # fmt: skip
        return questions

    def evidence_scores(self, questions: Questions) -> dict[str, np.ndarray]:
        """The evidence scores of the questions' context: its own retrieval when the blend recorded one (or for
        the evidence reader), else the context the models read."""
        if not self.evidence or self.scorer is None:
            return {}
        own = self.evidence_context()
        if own is not None and self.index is not None:
            questions = open_book(questions, self.index, own)  # replaces the models' context, if any
        return self.scorer.scores(questions, self.evidence, progress=len(questions) >= 500)

    def evidence_context(self) -> ContextSettings | None:
        """How many passages and characters the evidence reads, when not the models' own context."""
        if self.cfg.reader == "evidence":
            return ContextSettings(self.cfg.k or EVIDENCE_K, self.cfg.context_chars or EVIDENCE_CHARS)
        if self.blend is not None and self.blend.evidence_k:
            return ContextSettings(self.blend.evidence_k, self.blend.evidence_chars or EVIDENCE_CHARS)
        return None

    def combine(self, members: dict[str, np.ndarray], options) -> np.ndarray:
        """The final scores: the models alone, or the blend of z-scored members (recorded, or equal weights for
        the evidence reader)."""
        if self.blend is not None:
            return blend_members({m: members[m] for m in self.blend.members}, self.blend.weights, options)
        if "models" in members:
            return members["models"]
        return blend_members(members, [1.0] * len(members), options)


def plan_inference(cfg: InferConfig) -> Plan:
    """Check the flags together, then the models, the files, the index and the blend, in that order."""
    if not cfg.test:
        raise ConfigError("--test: give the question file to score")
    if Path(cfg.out).is_dir():
        raise ConfigError(
            f"--out {cfg.out}: is a folder; give the submission's file path (e.g. {cfg.out}/submission.csv)"
        )
    models = _models(cfg)
    blend = recorded_blend(models) if cfg.reader == "models" and cfg.blend == "recorded" else None
    questions = read_questions(cfg.test, lenient=True)  # a bad question degrades with a warning, never stops the run
    questions = trained_letters(questions, models)
    check_rotations(cfg.tta_rotations, len(questions.letters), str(cfg.test))
    valid = _valid(cfg) if cfg.tune_weights is not None else None
    recorded = model_retrieval([m.meta for m in models])
    index = open_index_for(cfg.index, recorded) if cfg.index is not None else None
    plan = Plan(cfg, models, questions, valid, recorded, index)
    if cfg.reader == "evidence":
        return _evidence_reader(plan)
    return _recorded_blend(plan, blend)


def trained_letters(questions: Questions, models: list[ExportedModel]) -> Questions:
    """The test's options cut to the letters the models were trained on: an extra column (F) is not a sixth
    option for models that never saw one (warned). Fewer options than trained is fine: pairs score alone."""
    trained = tuple(models[0].meta.get("letters") or ()) if models else ()
    extra = questions.letters[len(trained) :]
    if not trained or not extra or questions.letters[: len(trained)] != trained:
        return questions
    log.warning(
        "%s: option column(s) %s dropped: the models were trained on %s-%s and score those options only",
        questions.source, ", ".join(extra), trained[0], trained[-1],
    )  # fmt: skip
    keep = len(trained)
    answers = questions.answers
    if answers is not None and any(a >= keep for a in answers):
        answers = None  # an answer among the dropped options: not scored
    return dataclasses.replace(questions, options=[o[:keep] for o in questions.options], letters=trained,
                               answers=answers)  # fmt: skip


def _models(cfg: InferConfig) -> list[ExportedModel]:
    """The model folders, checked (none for the evidence reader); --weights and --tune-weights against them."""
    if cfg.reader == "evidence":
        if cfg.models or cfg.weights or cfg.tune_weights:
            raise ConfigError("--reader evidence scores without models: drop --models, --weights and --tune-weights")
        return []
    if not cfg.models:
        raise ConfigError("--models: give the exported model folders (or --reader evidence to score without models)")
    folders = find_model_folders(cfg.models)
    check_tuning(cfg, len(folders))
    check_weights(cfg.weights, len(folders), folders)
    models = inspect_models(folders, allow_mixed=cfg.allow_mixed)
    for model in models:  # a typo or a non-DeBERTa model fails in a second
        check_supported(cfg.attention, model.model_type, str(model.path))
        check_max_length(model, cfg.max_length)
    return models


def check_weights(weights, n_models: int, models=()) -> None:
    """One finite, non-negative weight per model with a positive sum."""
    if weights is None:
        return
    if len(weights) != n_models:
        raise ConfigError(
            f"--weights: {len(weights)} weights for {n_models} models {[str(m) for m in models]}; "
            "give one weight per model folder, in the order listed."
        )
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"--weights: need finite non-negative weights with a positive sum, got {list(weights)}")


def check_tuning(cfg: InferConfig, n_models: int) -> None:
    """--tune-weights fits the weights itself, so not with --weights, and needs two models to weigh."""
    if cfg.tune_weights is None:
        return
    if cfg.weights is not None:
        raise ConfigError(
            "--weights and --tune-weights: give one of them; --tune-weights fits the weights on its validation file."
        )
    if n_models < 2:
        raise ConfigError(f"--tune-weights {cfg.tune_weights}: one model found; weights need two or more models.")


def _valid(cfg: InferConfig) -> Questions:
    """The --tune-weights file: it needs answers, and enough questions for the cross-validation."""
    valid = read_questions(str(cfg.tune_weights), lenient=True)
    if valid.answers is None:
        raise ConfigError(
            f"--tune-weights {cfg.tune_weights}: no 'answer' column; weights are fitted to known answers. "
            "Give a validation file with the correct letter per row."
        )
    if len(valid) < TUNE_FOLDS:
        raise ConfigError(
            f"--tune-weights {cfg.tune_weights}: {len(valid)} questions, too few for {TUNE_FOLDS}-fold "
            "cross-validation; give a validation file of a few hundred questions."
        )
    check_rotations(cfg.tta_rotations, len(valid.letters), str(cfg.tune_weights))
    return valid


def _evidence_reader(plan: Plan) -> Plan:
    """No model: the evidence scores of each question's context, equally weighted once z-scored."""
    cfg = plan.cfg
    if plan.index is None and not has_context(plan.questions):
        raise ConfigError(
            f"--reader evidence: {cfg.test} has no context column and no --index was given; evidence scores read "
            "each question's context. Pass --index INDEX (mcq-retrieve build)."
        )
    plan.scorer = scorer_for(plan.index, cfg.evidence_embedder, plan.questions)
    plan.evidence = list(cfg.evidence) or list(plan.scorer.kinds)
    missing = [k for k in plan.evidence if k not in plan.scorer.kinds]
    where = f"the index {cfg.index} has none" if cfg.index else "no --index was given"
    if missing:
        raise ConfigError(
            f"--evidence {' '.join(missing)}: needs an embedder and {where}: pass --index of an index built with "
            "--retriever dense or hybrid, or --evidence-embedder LOCAL_FOLDER (a sentence-transformers model)"
        )
    log.info("reader evidence: %s scores, equally weighted once z-scored; no model", ", ".join(plan.evidence))
    return plan


def _recorded_blend(plan: Plan, blend: MemberBlend | None) -> Plan:
    """The blend the models recorded at training, checked against this index and embedder."""
    cfg = plan.cfg
    if blend is None:
        return plan
    if plan.index is None and not has_context(plan.questions):
        log.warning("the models recorded a blend with %s, which reads context: no --index, so the models score alone",
                    ", ".join(blend.members[1:]))  # fmt: skip
        return plan
    plan.scorer = scorer_for(plan.index, cfg.evidence_embedder, plan.questions)
    missing = [k for k in blend.members[1:] if k not in plan.scorer.kinds]
    if missing:
        raise ConfigError(
            f"the models' blend uses {' and '.join(missing)} evidence (measured with embedder {blend.embedder}), but "
            f"the index {cfg.index} has no embedder. Pass --evidence-embedder LOCAL_FOLDER, or --blend off to score "
            "with the models alone."
        )
    if (
        "dense" in blend.members
        and plan.scorer.embedder_name
        and blend.embedder not in ("", plan.scorer.embedder_name)
    ):
        log.warning("dense evidence: the blend was measured with embedder %s, this run embeds with %s",
                    blend.embedder, plan.scorer.embedder_name)  # fmt: skip
    plan.blend, plan.evidence = blend, list(blend.members[1:])
    log.info("%s, chosen at training: %s", blend.summary(), blend.reason)
    return plan


def recorded_blend(models: list[ExportedModel]) -> MemberBlend | None:
    """The blend the models' metadata records (None when none does); it must name exactly these models."""
    records = [m.meta.get(BLEND_KEY) for m in models]
    if not any(records):
        return None
    ids = sorted(str(m.meta.get(EXPORT_ID)) for m in models)
    first = next(r for r in records if r)
    named = sorted(map(str, first.get("models", [])))
    if any(r != first for r in records) or named != ids:
        raise ConfigError(
            f"the models' recorded blend does not match the models given: it was chosen for {named}, these are "
            f"{ids}. Give exactly the models of that training run, or pass --blend off to score without it."
        )
    raw = {k: v for k, v in first.items() if k != "models"}
    return MemberBlend.from_meta(raw, str(models[0].path))
