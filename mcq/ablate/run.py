"""Train every variant on the same data and seeds, each in its own run folder, and compare them.

Each variant is a plain training run (mcq.train.run.run_training) in <root>/<variant>/, so a killed ablation
resumes as a run does: finished variants and seeds are kept, a half-trained seed continues from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path

import numpy as np

from mcq.ablate.report import write_ablation
from mcq.ablate.stats import paired, seed_stats
from mcq.ablate.variants import Variant, variant_config
from mcq.core.data import Questions, read_questions
from mcq.core.metrics import question_ap
from mcq.core.significance import paired_bootstrap
from mcq.errors import ConfigError
from mcq.train.config import TrainConfig
from mcq.train.layout import RunLayout
from mcq.train.lr import mean_lr
from mcq.train.run import run_training

log = logging.getLogger(__name__)


def run_ablation(base: TrainConfig, variants: list[Variant], root: Path) -> dict:
    """Train (or resume) each variant in turn; the tables are rewritten after each, so they grow as it runs."""
    base.check_ready()
    if base.valid is None:
        raise ConfigError("an ablation scores every variant: set `valid:` in the config or pass --valid FILE")
    valid = read_questions(base.valid, require_answer=True).head(base.max_valid)
    done: list[dict] = []
    ablation: dict = {}
    for i, variant in enumerate(variants, 1):
        cfg = variant_config(base, variant, root)
        layout = RunLayout.of(cfg.output_dir)
        log.info("variant %d/%d '%s' (%s): %s", i, len(variants), variant.name, variant.about, variant.overrides)
        try:
            report = run_training(cfg, resume=layout.root.exists())
        except ConfigError as err:
            raise ConfigError(f"variant '{variant.name}' ({layout.root}): {err}") from err
        done.append(summarise(variant, cfg, report))
        ablation = compare(base, done, valid, root)
        write_ablation(root, ablation)
    return ablation


def summarise(variant: Variant, cfg: TrainConfig, report: dict) -> dict:
    """One variant's line of the table: seed scores, ensemble, parameters, LRs, loss and time."""
    seeds = report["seeds"]
    scores = {s["seed"]: s["valid_map3"] for s in seeds}
    stats = seed_stats(list(scores.values()))
    first = next((s for s in seeds if s.get("groups")), seeds[0])
    losses = [s["train_loss"] for s in seeds if s.get("train_loss") is not None]
    return {
        "name": variant.name,
        "about": variant.about,
        "overrides": variant.overrides,
        "run": cfg.output_dir,
        "scores": scores,
        "mean": stats.mean,
        "std": stats.std,
        "ensemble": report.get("ensemble_valid_map3"),
        "blend": report.get("blend"),
        "trainable_params": first.get("trainable_params"),
        "total_params": first.get("total_params"),
        "train_loss": float(np.mean(losses)) if losses else None,
        "wall_s": sum(s.get("wall_s", 0.0) for s in seeds),
        "lr": lr_summary(first.get("groups", []), report["top_lr"], cfg),
    }


def lr_summary(groups: list[dict], top_lr: float, cfg: TrainConfig) -> dict:
    """What the LR rule gave in phase 2: the top LR, the lowest group's, and the mean over trainable parameters."""
    mean = mean_lr([g["lr"] for g in groups], [g["params"] for g in groups]) if groups else None
    return {
        "top": max((g["lr"] for g in groups), default=top_lr),  # layer_lr_norm mean raises it above cfg's
        "lowest": min((g["lr"] for g in groups), default=None),
        "lowest_group": min(groups, key=lambda g: g["lr"])["name"] if groups else None,
        "param_weighted_mean": mean,
        "head_steps": cfg.head_steps,
        "head_lr": cfg.head_lr,
        "shape": cfg.layer_lr_shape,
        "min_factor": cfg.layer_lr_min,
    }


def compare(base: TrainConfig, variants: list[dict], valid: Questions, root: Path) -> dict:
    """Every pair of variants (later minus earlier, in the order asked): per-seed paired differences against the
    seed noise, and the ensembles' difference with a bootstrap over the questions."""
    assert valid.answers is not None
    ap = {v["name"]: ensemble_ap(Path(v["run"]), valid) for v in variants}
    pairs = []
    for a, b in itertools.combinations(variants, 2):
        seeds = paired(a["name"], b["name"], a["scores"], b["scores"])
        entry = dataclasses.asdict(seeds)
        ap_a, ap_b = ap[a["name"]], ap[b["name"]]
        if ap_a is not None and ap_b is not None:
            boot = paired_bootstrap(ap_a, ap_b)
            entry["ensemble"] = dataclasses.asdict(boot) | {"exceeds_noise": boot.exceeds_noise}
        pairs.append(entry)
    return {
        "root": str(root),
        "base_config": dataclasses.asdict(base),
        "n_valid": len(valid),
        "variants": variants,
        "pairs": pairs,
    }


def ensemble_ap(run: Path, valid: Questions) -> np.ndarray | None:
    """Per-question AP@3 of a variant's saved ensemble logits (None when the run has none)."""
    path = RunLayout.of(run).ensemble_logits
    if not path.is_file():
        return None
    assert valid.answers is not None
    return question_ap(np.load(path), valid.answers, valid.options)
