"""Train the recipe for every seed: `mcq-train --config configs/deberta-v3-large.yaml [--flags]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mcq.cli import main_guard, setup_logging
from mcq.config import add_dataclass_flags, flag_overrides, load_config
from mcq.train.config import TrainConfig


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML file of TrainConfig keys; flags below override it")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run: finished seeds are kept, the rest resume from their last checkpoint",
    )
    add_dataclass_flags(parser, TrainConfig)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(TrainConfig, args.config, flag_overrides(args, TrainConfig))

    from mcq.cli import freeze_imports, quiet_transformers  # heavy imports only once the arguments are good
    from mcq.train import distributed
    from mcq.train.run import run_training

    setup_logging(distributed.is_main())
    quiet_transformers()
    freeze_imports()
    report = run_training(cfg, resume=args.resume)
    if not distributed.is_main():
        return 0  # under torchrun, rank 0 speaks for the run
    for seed in report["seeds"]:
        score = seed.get("valid_map3")
        shown = f"valid MAP@3 {score:.4f}" if score is not None else "no validation file"
        print(f"seed {seed['seed']}: {shown}  ->  {seed.get('export')}")
    if "ensemble_valid_map3" in report:
        print(f"ensemble of {len(report['seeds'])} seeds: valid MAP@3 {report['ensemble_valid_map3']:.4f}")
    if report.get("blend"):
        print(f"blend with the evidence scores: {report['blend']['reason']} (recorded in every exported model)")
    print(f"report: {cfg.output_dir}/report.md")
    return 0


def run() -> None:
    """Console-script entry point (mcq-train)."""
    sys.exit(main_guard(main))
