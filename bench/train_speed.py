"""Training speed on real questions: our Trainer set-up vs the same model trained the run_swag way.

    python bench/train_speed.py --repeats 3

ours     : mcq.train pieces: TrainingArguments from `training_args` (length-grouped sampling),
           RecipeTrainer, our optimizer groups, MultipleChoiceCollator padding to a multiple of 8
baseline : the same Trainer, arguments and optimizer, but random sampling and every pair padded to
           max_length (run_swag.py --pad_to_max_length)
Both train a fixed number of optimizer steps from the same weights on the same questions (phase 2:
word embeddings frozen); tokens/s counts real (non-pad) tokens seen by the model's forward.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import AutoModelForMultipleChoice, AutoTokenizer, set_seed  # noqa: E402

from bench.common import MINILM, TRAIN, cpu_name, median, timed  # noqa: E402
from mcq.core.data import read_questions  # noqa: E402
from mcq.core.features import MultipleChoiceCollator, encode  # noqa: E402
from mcq.core.model import resolve_model_path  # noqa: E402
from mcq.train.config import TrainConfig  # noqa: E402
from mcq.train.optim import build_optimizer, param_groups  # noqa: E402
from mcq.train.phases import freeze_for, recipe_phases  # noqa: E402
from mcq.train.trainer import RecipeTrainer, training_args  # noqa: E402


class TokenCounter:
    """Forward pre-hook that adds up real and computed tokens of every batch the model sees."""

    def __init__(self):
        self.real = self.computed = 0

    def __call__(self, module, args, kwargs):
        mask = kwargs["attention_mask"]
        self.real += int(mask.sum())
        self.computed += mask.numel()


def train_once(cfg: TrainConfig, features, tokenizer, naive: bool, out: Path) -> dict:
    """One timed Trainer.train() of cfg.max_steps steps; the run_swag way when `naive`."""
    set_seed(0)
    model = AutoModelForMultipleChoice.from_pretrained(resolve_model_path(cfg.model))
    full = recipe_phases(cfg, 5e-5)[-1]
    freeze_for(model, full)
    counter = TokenCounter()
    model.register_forward_pre_hook(counter, with_kwargs=True)
    args = training_args(cfg, full, out, 0, has_valid=False)
    if naive:
        args.train_sampling_strategy = "random"
        collator = MultipleChoiceCollator(tokenizer, padding="max_length", max_length=cfg.max_length)
    else:
        collator = MultipleChoiceCollator(tokenizer, pad_to_multiple_of=8)
    groups = param_groups(model, args.learning_rate, full.layers, args.weight_decay)
    trainer = RecipeTrainer(
        phase=full,
        model=model,
        args=args,
        train_dataset=features,
        data_collator=collator,
        processing_class=tokenizer,
        optimizers=(build_optimizer(groups, cfg.adam_eps), None),
    )
    _, seconds = timed(trainer.train)
    return {"seconds": seconds, "real": counter.real, "computed": counter.computed}


def print_table(rows: dict[str, list[dict]], cfg: TrainConfig, n: int) -> None:
    print(
        f"\nMiniLM-L6 multiple choice, {n} questions, {cfg.max_steps} steps x {cfg.per_device_batch} questions, "
        f"max_length {cfg.max_length}; medians of {len(rows['ours'])} runs; {cpu_name()}"
    )
    print("| path | median s | real tokens | tokens computed | padding efficiency | real tokens/s | runs (s) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    rate = {}
    for path, runs in rows.items():
        s = median([r["seconds"] for r in runs])
        real, computed = runs[0]["real"], runs[0]["computed"]
        rate[path] = median([r["real"] / r["seconds"] for r in runs])
        times = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        print(f"| {path} | {s:.1f} | {real} | {computed} | {real / computed:.3f} | {rate[path]:.0f} | {times} |")
    print(f"speed-up ours vs baseline (real tokens/s): {rate['ours'] / rate['baseline']:.2f}x (target >= 1.5x)")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(TRAIN), help="training question file")
    p.add_argument("--model", default=MINILM)
    p.add_argument("--questions", type=int, default=400, help="first N questions of --data")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    p.add_argument("--batch", type=int, default=8, help="questions per step")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is steadier when another process holds a core)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    cfg = TrainConfig(
        model=args.model,
        max_steps=args.steps,
        per_device_batch=args.batch,
        max_length=args.max_length,
        precision="fp32",
        save_steps=10**6,
        logging_steps=10**6,
        report_to=["none"],
    )
    questions = read_questions(args.data, require_answer=True).head(args.questions)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(cfg.model))
    features = encode(questions, tokenizer, cfg.max_length)
    rows: dict[str, list[dict]] = {"ours": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for path in rows:
                rows[path].append(train_once(cfg, features, tokenizer, path == "baseline", Path(tmp) / f"{path}{r}"))
                print(f"  repeat {r + 1} {path}: {rows[path][-1]['seconds']:.1f}s", flush=True)
    print_table(rows, cfg, len(questions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
