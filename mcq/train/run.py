"""A training run: every seed of the recipe (skipping finished ones on resume), their ensemble, the blend with
the evidence scores, and the report. One seed's phases, export and scoring are mcq.train.seed.SeedRun."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from mcq.core.data import Questions
from mcq.core.metrics import map3_score, mean_logits
from mcq.errors import ConfigError
from mcq.io import atomic_write_text, write_array, writes_to
from mcq.train import distributed
from mcq.train.blend import blend_for_run
from mcq.train.config import TrainConfig, resume_differences
from mcq.train.data import RunData, check_overlap, load_run_data  # noqa: F401  (re-exported: the run's data)
from mcq.train.layout import RunLayout, run_lock
from mcq.train.report import write_report
from mcq.train.seed import SeedRun, score_model
from mcq.train.trainer import RecipeTrainer  # noqa: F401  (re-exported: what a run trains with)

log = logging.getLogger(__name__)


def finished_seed(layout: RunLayout, seed: int) -> dict | None:
    """The report part of a seed whose export already exists (so it is not retrained), else None."""
    meta_file = layout.export_meta(seed)
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    saved = layout.seed_report(seed)
    part = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}  # per-epoch scores, params
    return part | {
        "seed": seed,
        "export": str(meta_file.parent),
        "valid_map3": meta.get("valid_map3"),
        "skipped": True,
    }


def run_training(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train every seed (skipping finished ones on resume), ensemble them, and write the report."""
    layout = RunLayout.of(cfg.output_dir)
    with run_lock(layout) if distributed.is_main() else contextlib.nullcontext():
        return _run_training(cfg, layout, resume)


def check_resume(cfg: TrainConfig, layout: RunLayout, resume: bool) -> None:
    """A new run needs a fresh folder; a resumed one the settings it started with (else seeds would mix)."""
    # rank 0 decides (under torchrun it may already have written run_config.json when another rank looks)
    if not resume and distributed.is_main() and (layout.config.is_file() or layout.started(cfg.seeds)):
        raise ConfigError(
            f"{layout.root} already holds a run. Add --resume to continue it (finished seeds are kept), "
            "or choose another --output-dir."
        )
    if resume and layout.config.is_file():
        differences = resume_differences(json.loads(layout.config.read_text(encoding="utf-8")), cfg)
        if differences:
            raise ConfigError(
                f"{layout.root}: --resume with other settings than the run started with ({'; '.join(differences)}). "
                "Resume with the same settings, or start a new run in another --output-dir."
            )
    elif resume:
        log.warning("%s: no %s (a run of an older mcq); settings cannot be compared", layout.root, layout.config.name)


def _run_training(cfg: TrainConfig, layout: RunLayout, resume: bool) -> dict:
    start = time.perf_counter()
    check_resume(cfg, layout, resume)
    data = load_run_data(cfg, layout, resume)
    if distributed.is_main() and not (resume and layout.config.is_file()):
        atomic_write_text(layout.data_fingerprint, data.train_fingerprint)
        atomic_write_text(layout.config, json.dumps(dataclasses.asdict(cfg), indent=2))  # the data was good
    seeds = []
    training_s = 0.0  # seconds this process spent training seeds (each seed also records its own)
    reused = 0  # seeds an earlier process exported
    for seed in cfg.seeds:
        done = finished_seed(layout, seed) if resume else None
        if done:
            log.info("seed %d: already exported to %s, not retrained", seed, done["export"])
            reused += 1
        if done is None:
            advice = "free disk space, then run the same command with --resume (the seed continues from its last "
            begun = time.perf_counter()
            with writes_to(layout.seed_dir(seed), advice + "complete checkpoint)"):
                done = SeedRun(cfg, data, seed, resume).run()
            training_s += time.perf_counter() - begun
        seeds.append(done)
    report: dict = {
        "config": dataclasses.asdict(cfg),
        "n_train": len(data.train),
        "n_valid": len(data.valid) if data.valid else 0,
        "n_options": len(data.train.letters),
        "top_lr": data.top_lr,
        "seeds": seeds,
        "wall_s": time.perf_counter() - start,
        "seeds_reused": reused,
    }
    # a resumed run: the seeds trained by earlier processes count too (wall_s is this process's alone)
    report["total_wall_s"] = report["wall_s"] - training_s + sum(s.get("wall_s", 0.0) for s in seeds)
    if data.valid is not None and distributed.is_main():
        assert data.valid.answers is not None
        logits = [seed_valid_logits(cfg, layout, s, data.valid) for s in seeds]
        ensemble = mean_logits(logits).astype(np.float32)
        report["ensemble_valid_map3"] = map3_score(ensemble, data.valid.answers, data.valid.options)
        write_array(layout.ensemble_logits, ensemble)
        blend = blend_for_run(cfg, layout, data.valid, ensemble)
        if blend is not None:
            report["blend"] = blend.to_meta()
    if distributed.is_main():
        write_report(layout.root, report)
    report = distributed.from_main(report)
    distributed.end_process_group()
    return report


def seed_valid_logits(cfg: TrainConfig, layout: RunLayout, seed: dict, valid: Questions) -> np.ndarray:
    """A seed's saved validation logits, rescored from its export when missing or saved for other
    questions (a resumed run given another validation file)."""
    n = seed["seed"]
    fingerprint = layout.valid_fingerprint(n)
    if layout.valid_logits(n).is_file() and fingerprint.is_file():
        if fingerprint.read_text(encoding="utf-8") == valid.fingerprint():
            return np.load(layout.valid_logits(n))
        log.info("seed %d: the validation questions changed since it was scored; scoring again", n)
    seed["valid_map3"] = score_model(Path(seed["export"]), valid, layout, n, cfg.attention)
    return np.load(layout.valid_logits(n))
