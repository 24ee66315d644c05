"""Generate extra training questions: `mcq-generate --passages DIR --out generated.csv` (docs/GENERATE.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mcq.cli import main_guard
from mcq.config import add_dataclass_flags, flag_overrides, load_config
from mcq.errors import McqError
from mcq.generate.config import GenerateConfig
from mcq.secrets import redact


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mcq.generate",
        description="Generate extra training questions with an OpenAI-compatible LLM, with quality checks.",
    )
    parser.add_argument("--config", help="YAML file of the options below (flags override it)")
    add_dataclass_flags(parser, GenerateConfig)
    parser.add_argument("--api-key", help="API key (prefer env MCQ_LLM_API_KEY or OPENAI_API_KEY: flags show in `ps`)")
    parser.add_argument("--verify-api-key", help="API key of the verification server (env MCQ_LLM_VERIFY_API_KEY)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    secrets = [
        args.api_key,
        args.verify_api_key,
        os.environ.get("MCQ_LLM_API_KEY"),
        os.environ.get("OPENAI_API_KEY"),
        os.environ.get("MCQ_LLM_VERIFY_API_KEY"),
    ]
    from mcq.generate.run import format_summary, run_generation  # sklearn and pandas: after the arguments

    try:
        cfg = load_config(GenerateConfig, args.config, flag_overrides(args, GenerateConfig))
        summary = run_generation(cfg, api_key=args.api_key, verify_api_key=args.verify_api_key)
    except McqError as err:
        err.args = (redact(str(err), secrets),)  # a message never shows a key
        raise
    except KeyboardInterrupt:
        print("interrupted: kept rows are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 0


def run() -> None:
    """Console-script entry point (mcq-generate, python -m mcq.generate)."""
    sys.exit(main_guard(main))
