"""Train named variants of one config on the same data and seeds, and say which differences beat the seed noise:
`python -m mcq.ablate --config configs/minilm-llmse.yaml --variants full,frozen,recipe [--seeds 0 1 2]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mcq.ablate.variants import BUILTIN, choose, read_variants
from mcq.cli import main_guard, setup_logging
from mcq.config import add_dataclass_flags, flag_overrides, load_config
from mcq.train.config import TrainConfig

DEFAULT_VARIANTS = "full,frozen,recipe"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mcq.ablate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML file of TrainConfig keys: the base every variant overrides")
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"comma-separated variant names, compared in this order (default {DEFAULT_VARIANTS}); built in: "
        + "; ".join(f"{v.name} = {v.about}" for v in BUILTIN.values()),
    )
    parser.add_argument(
        "--define", help="YAML file of more variants: `name: {setting: value, ...}` (TrainConfig keys)"
    )
    parser.add_argument(
        "--out",
        help="ablation folder: one run folder per variant, ablation.md/json/png (default: <output_dir>-ablation); "
        "run the same command again to resume it",
    )
    parser.add_argument("--list", action="store_true", help="print the variants and their overrides, and stop")
    add_dataclass_flags(parser, TrainConfig)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    defined = read_variants(args.define) if args.define else {}
    variants = choose([n.strip() for n in args.variants.split(",") if n.strip()], defined)
    if args.list:
        for v in (BUILTIN | defined).values():
            print(f"{v.name:12s} {v.overrides or '(no overrides)'}  {v.about}")
        return 0
    base = load_config(TrainConfig, args.config, flag_overrides(args, TrainConfig))
    root = Path(args.out or f"{base.output_dir.rstrip('/')}-ablation")

    from mcq.ablate.run import run_ablation  # heavy imports only once the arguments are good
    from mcq.cli import freeze_imports, quiet_transformers

    setup_logging()
    quiet_transformers()
    freeze_imports()
    ablation = run_ablation(base, variants, root)
    for v in ablation["variants"]:
        ensemble = "-" if v["ensemble"] is None else f"{v['ensemble']:.4f}"
        print(f"{v['name']:12s} mean MAP@3 {v['mean']:.4f} ± {v['std']:.4f}  ensemble {ensemble}")
    for p in ablation["pairs"]:
        verdict = "beyond seed noise" if p["exceeds_noise"] else "within seed noise"
        print(f"{p['b']} − {p['a']}: {p['mean']:+.4f} per seed ({verdict})")
    print(f"tables: {root}/ablation.md")
    return 0


def run() -> None:
    """Console-script entry point (mcq-ablate)."""
    sys.exit(main_guard(main))
