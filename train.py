"""Train the recipe for every seed: `python train.py --config configs/deberta-v3-large.yaml [--flags]`."""
from __future__ import annotations

import argparse
import os
import sys

from mcq.cli import main_guard
from mcq.config import TrainConfig, add_dataclass_flags, flag_overrides, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of TrainConfig keys; flags below override it")
    parser.add_argument("--resume", action="store_true", help="continue a killed run: finished seeds are kept, the rest resume from their last checkpoint")
    add_dataclass_flags(parser, TrainConfig)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(TrainConfig, args.config, flag_overrides(args, TrainConfig))

    from mcq.training import run_training  # heavy imports only once the arguments are good

    report = run_training(cfg, resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 speaks for the run
    for seed in report["seeds"]:
        score = seed.get("valid_map3")
        shown = f"valid MAP@3 {score:.4f}" if score is not None else "no validation file"
        print(f"seed {seed['seed']}: {shown}  ->  {seed.get('export')}")
    if "ensemble_valid_map3" in report:
        print(f"ensemble of {len(report['seeds'])} seeds: valid MAP@3 {report['ensemble_valid_map3']:.4f}")
    print(f"report: {cfg.output_dir}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
