"""The blend of a run's models with the evidence scores, chosen on its validation set and recorded with every
exported model, so `infer.py` and the Kaggle kernel apply it without flags.

After the seeds: the evidence scores of the validation questions' contexts (the contexts the models were
scored with), then `choose_blend` between the models alone, equal z-scored weights and fitted weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np

from mcq.core.blend import MemberBlend, choose_blend
from mcq.core.data import Questions
from mcq.core.evidence import scorer_for
from mcq.core.export import BLEND_KEY, EXPORT_ID, write_meta
from mcq.core.openbook import has_context, open_book
from mcq.io import write_array
from mcq.retrieve.settings import ContextSettings
from mcq.train.config import RESUMABLE, TrainConfig
from mcq.train.layout import RunLayout

log = logging.getLogger(__name__)

MIN_QUESTIONS = 20  # fewer validation questions cannot tell a blend from noise (5-fold cross-validation inside)


def export_id(cfg: TrainConfig, seed: int) -> str:
    """Which run and seed a model is: a hash of the settings that decide what it learned, and the seed."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{digest}-seed{seed}"


def blend_for_run(cfg: TrainConfig, layout: RunLayout, valid: Questions, ensemble: np.ndarray) -> MemberBlend | None:
    """Choose the blend on the validation set and record it in every exported model of the run; None when the
    run has no validation context or no evidence is asked for (the models then score alone)."""
    kinds = [k for k in cfg.evidence if k != "none"]
    if not kinds or not (cfg.index or has_context(valid)):
        return None
    if len(valid) < MIN_QUESTIONS:
        log.info("%s: %d validation questions, too few to choose a blend (%d at least); the models score alone",
                 cfg.valid, len(valid), MIN_QUESTIONS)  # fmt: skip
        return None
    answers = valid.answers
    assert answers is not None
    index, context = None, None
    if cfg.index:  # the evidence reads its own passages, whatever context the models read (even none)
        from mcq.retrieve.index import open_index

        index, context = open_index(cfg.index), (cfg.evidence_k, cfg.evidence_chars)
        valid = open_book(valid, index, ContextSettings(*context))
    scorer = scorer_for(index, cfg.evidence_embedder, valid)
    usable = [k for k in kinds if k in scorer.kinds]
    if len(usable) < len(kinds):
        log.info("evidence %s: no embedder (the index has none; set evidence_embedder to add it)", "dense")
    scores = scorer.scores(valid, usable)
    for kind, array in scores.items():
        write_array(layout.valid_evidence(kind), array)
    blend = choose_blend(
        {"models": ensemble} | scores,
        answers,
        valid.options,
        valid=str(cfg.valid),
        embedder=scorer.embedder_name if "dense" in usable else "",
        evidence_context=context,
    )
    record_blend(cfg, layout, blend)
    log.info("blend of the models with %s evidence: %s", ", ".join(usable), blend.reason)
    return blend


def record_blend(cfg: TrainConfig, layout: RunLayout, blend: MemberBlend) -> None:
    """Write the blend, naming the models it was chosen for, into each seed's mcq_model.json."""
    ids = [export_id(cfg, seed) for seed in cfg.seeds]
    for seed, model_id in zip(cfg.seeds, ids):
        path = layout.export_meta(seed)
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta[EXPORT_ID] = model_id
        meta[BLEND_KEY] = blend.to_meta() | {"models": ids}
        write_meta(path.parent, meta)
