"""How fast every command answers --help (the target: under a second), against `import torch` timed the same
way in the same run: no command may import torch, transformers or sklearn before its arguments are parsed.

    python bench/cli_help.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python train.py --help": ["train.py", "--help"],
    "python infer.py --help": ["infer.py", "--help"],
    "python -m mcq.kaggle --help": ["-m", "mcq.kaggle", "--help"],
    "python -m mcq.rehearse --help": ["-m", "mcq.rehearse", "--help"],
    "python -m mcq.generate --help": ["-m", "mcq.generate", "--help"],
}
REFERENCE = ("python -c 'import torch' (what --help must not pay)", ["-c", "import torch"])


def seconds(args: list[str], repeats: int) -> list[float]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    reference = statistics.median(seconds(REFERENCE[1], args.repeats))
    print(f"| command | median s of {args.repeats} | vs import torch |")
    print("|---|---:|---:|")
    for name, argv in COMMANDS.items():
        median = statistics.median(seconds(argv, args.repeats))
        print(f"| `{name}` | {median:.2f} | {median / reference:.2f}x |")
    print(f"| `{REFERENCE[0]}` | {reference:.2f} | 1.00x |")


if __name__ == "__main__":
    main()
