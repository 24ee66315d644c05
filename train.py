"""Train the recipe for every seed: `python train.py --config configs/deberta-v3-large.yaml [--flags]`."""

from mcq.train.cli import run

if __name__ == "__main__":
    run()
